/*
 * libc.c - what the C SDK and wasi-libc expect around the engine.
 *
 * dwf_alloc / dwf_free (the ABI's allocator exports) and the SDK's allocation
 * helpers are malloc's here: QuickJS brings wasi-libc, whose malloc owns the
 * heap, so the C SDK's own bump allocator (dwf_mem.c) is left out.
 *
 * wasi-libc calls a few WASI functions (the clock, writes to stdout/stderr,
 * closing and seeking files it never opens). A tenant module may import only
 * dwf.* (registration refuses anything else), so they are defined here, under
 * the names wasi-libc imports them by, and never leave the module: the clock
 * is the latest time the guest learned from the host (see dwfjs_clock_ms) and
 * writes to stdout/stderr go to the host log.
 */
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* ---- the ABI allocator and the C SDK's helpers ------------------------------ */

__attribute__((export_name("dwf_alloc"))) void *dwf_alloc(uint32_t len) {
    return malloc(len ? len : 1);
}

__attribute__((export_name("dwf_free"))) void dwf_free(void *ptr, uint32_t len) {
    (void)len;
    free(ptr);
}

_Noreturn void dwf__oom(void) {
    static const char msg[] = "dwf: out of memory (the JavaScript engine could not allocate)";
    if (dwfjs_ready) dwf_host_log(DWF_LOG_ERROR, msg, sizeof msg - 1);
    __builtin_trap();
}

void *dwf__grow(void *ptr, uint32_t old_len, uint32_t new_len) {
    (void)old_len;
    void *p = realloc(ptr, new_len);
    if (!p) dwf__oom();
    return p;
}

/* ---- WASI, inside the module ------------------------------------------------ */

#define WASI_ESUCCESS 0
#define WASI_EBADF 8
#define WASI_CLOCK_MONOTONIC 1

typedef struct {
    uint32_t buf;
    uint32_t len;
} wasi_ciovec;

int32_t __imported_wasi_snapshot_preview1_clock_time_get(int32_t clock, int64_t precision,
                                                         int32_t out) {
    (void)clock, (void)precision;
    *(uint64_t *)(uintptr_t)out = (uint64_t)dwfjs_clock_ms * 1000000u;
    return WASI_ESUCCESS;
}

/* stdout and stderr (QuickJS's diagnostics) become log lines; nothing else is open. */
int32_t __imported_wasi_snapshot_preview1_fd_write(int32_t fd, int32_t iovs, int32_t count,
                                                   int32_t written) {
    if (fd != 1 && fd != 2) return WASI_EBADF;
    const wasi_ciovec *vec = (const wasi_ciovec *)(uintptr_t)iovs;
    uint32_t total = 0;
    for (int32_t i = 0; i < count; i++) {
        if (dwfjs_ready && vec[i].len)
            dwf_host_log(fd == 2 ? DWF_LOG_WARNING : DWF_LOG_INFO,
                         (const void *)(uintptr_t)vec[i].buf, vec[i].len);
        total += vec[i].len;
    }
    *(uint32_t *)(uintptr_t)written = total;
    return WASI_ESUCCESS;
}

int32_t __imported_wasi_snapshot_preview1_fd_close(int32_t fd) {
    (void)fd;
    return WASI_EBADF;
}

/* Zig's own close() (in its part of the libc) imports fd_close by another name. */
int close(int fd) {
    (void)fd;
    return -1;
}

int32_t __imported_wasi_snapshot_preview1_fd_fdstat_get(int32_t fd, int32_t out) {
    (void)fd, (void)out;
    return WASI_EBADF;
}

int32_t __imported_wasi_snapshot_preview1_fd_seek(int32_t fd, int64_t offset, int32_t whence,
                                                  int32_t out) {
    (void)fd, (void)offset, (void)whence, (void)out;
    return WASI_EBADF;
}
