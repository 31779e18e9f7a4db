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

/* An invocation's journal (dwf_durable.c): where replay and step batches start, from
 * the dwf_run event map (`journal_length`, `replay`). */
void dwf__journal_begin(const dwf_reader *event);

/* dwf_fail was called during this invocation. */
bool dwf__workflow_failed(void);

/* A reader over one msgpack nil. */
dwf_reader dwf__nil_reader(void);

/* The manifest map up to its workflow names: write `workflow_count` strings next. */
void dwf__write_manifest_head(dwf_writer *w, const char *sdk, uint32_t workflow_count);

/*
 * dwf_step_do in two halves, for runtimes whose step bodies do not return at
 * once (the JavaScript engine awaits a promise between them).
 *
 * dwf__step_begin answers a step from the event's replay or the journal (false:
 * *recorded holds its outcome), or opens an attempt (true): run the body with
 * out->step, then call dwf__step_end with whether it succeeded (its result or
 * its error written into out->step as a C body would). A batched attempt
 * (proposal 0002) keeps `name` as the running step: it must stay valid until
 * dwf__step_end. No durable call may happen in between.
 */
typedef struct {
    dwf_step step;
    bool batched;
} dwf__step_attempt;

bool dwf__step_begin(const char *name, const dwf_step_config *config, dwf__step_attempt *out,
                     dwf_result *recorded);
dwf_result dwf__step_end(dwf__step_attempt *attempt, bool ok);

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
