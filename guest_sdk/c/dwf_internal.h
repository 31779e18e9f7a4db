/*
 * dwf_internal.h - declarations shared by the SDK's .c files; not for tenants.
 */
#ifndef DWF_INTERNAL_H
#define DWF_INTERNAL_H

#include "dwf.h"
#include "dwf_abi.h"

/* A host return code (OK / ERROR) and its out slot as a dwf_result; traps on any other. */
dwf_result dwf__outcome(const char *call, const char *name, int32_t code,
                        const dwf_out_slot *slot);

/* The ABI exports defined in dwf.c (dwf_alloc / dwf_free are in dwf.h). */
int32_t dwf_abi_version(void);
int32_t dwf_describe(void);
int32_t dwf_run(const uint8_t *event, uint32_t len);

/* Logs why and traps: the SDK cannot continue without memory. Never returns. */
_Noreturn void dwf__oom(void);

/* dwf_alloc that traps instead of returning 0. */
void *dwf__xalloc(uint32_t len);

/*
 * Resizes a dwf_alloc block from old_len to new_len bytes (new_len > old_len),
 * in place when it is the most recent block, else by copying. Traps on OOM.
 */
void *dwf__grow(void *ptr, uint32_t old_len, uint32_t new_len);

/* A NUL-terminated heap copy of len bytes. */
char *dwf__strndup(const char *s, uint32_t len);

/* A header's value from a map the host keyed by lower-case names, matching `name`
 * case-insensitively; NULL if absent. */
const char *dwf__header(const dwf_reader *headers, const char *name);

/* libc functions clang may emit calls to even without libc. */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#endif /* DWF_INTERNAL_H */
