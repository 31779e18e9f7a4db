/*
 * dwf_str.c - small string helpers of the SDK (NUL-terminated UTF-8): length,
 * equality, copies, concatenation, decimal integers, and dwf__xalloc (dwf_alloc
 * or trap). Apart from the allocator so that a runtime with its own libc can use
 * them too.
 */
#include <stdarg.h>

#include "dwf_internal.h"

uint32_t dwf_strlen(const char *s) {
    uint32_t n = 0;
    if (s)
        while (s[n]) n++;
    return n;
}

bool dwf_streq(const char *a, const char *b) {
    if (!a || !b) return a == b;
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

void *dwf__xalloc(uint32_t len) {
    void *p = dwf_alloc(len);
    if (!p) dwf__oom();
    return p;
}

char *dwf__strndup(const char *s, uint32_t len) {
    if (len == 0xffffffffu) dwf__oom();
    char *out = dwf__xalloc(len + 1);
    memcpy(out, s, len);
    out[len] = 0;
    return out;
}

char *dwf_cat(const char *first, ...) {
    va_list ap;
    uint64_t total = 0;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) total += dwf_strlen(s);
    va_end(ap);
    if (total >= 0xffffffffu) dwf__oom();

    char *out = dwf__xalloc((uint32_t)total + 1), *end = out;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) {
        uint32_t n = dwf_strlen(s);
        memcpy(end, s, n);
        end += n;
    }
    va_end(ap);
    *end = 0;
    return out;
}

char *dwf_itoa(int64_t v, char buf[DWF_ITOA_SIZE]) {
    char tmp[DWF_ITOA_SIZE];
    /* Work with the magnitude as unsigned so INT64_MIN does not overflow. */
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    int n = 0;
    do {
        tmp[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    int i = 0;
    if (v < 0) buf[i++] = '-';
    while (n) buf[i++] = tmp[--n];
    buf[i] = 0;
    return buf;
}
