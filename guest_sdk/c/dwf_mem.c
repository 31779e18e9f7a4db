/*
 * dwf_mem.c - the guest allocator (exports dwf_alloc / dwf_free) and the libc
 * memory functions the compiler may call. A runtime that brings its own libc
 * (the JavaScript engine in guest_sdk/js) leaves this file out and builds
 * dwf_alloc on malloc instead.
 *
 * The allocator is a bump pointer over the memory after __heap_base, plus a
 * first-fit free list for blocks released out of order. A fresh instance
 * serves each invocation, so there is no need for anything smarter: the goal
 * is only that dwf_free is safe and that the common "free the newest block"
 * and "grow the newest buffer" patterns reuse memory.
 */
#include "dwf_abi.h"
#include "dwf_internal.h"

#define PAGE_SIZE 65536u
#define ALIGN 8u

/* Provided by wasm-ld: the first byte after data and stack. */
extern unsigned char __heap_base;

/* A released block, stored in the block itself (blocks are >= 8 bytes). */
typedef struct free_block {
    struct free_block *next;
    uint32_t size;
} free_block;

static uint32_t heap_start; /* aligned __heap_base; 0 until first use */
static uint32_t heap_top;   /* next never-allocated byte */
static free_block *free_list;

/* Block size for a request: aligned, never 0 (so every block is distinct). */
static uint64_t block_size(uint32_t len) {
    uint64_t n = len ? len : 1;
    return (n + (ALIGN - 1)) & ~(uint64_t)(ALIGN - 1);
}

static void heap_init(void) {
    if (heap_start == 0) {
        heap_start = (uint32_t)(((uintptr_t)&__heap_base + (ALIGN - 1)) & ~(uintptr_t)(ALIGN - 1));
        heap_top = heap_start;
    }
}

/* Makes sure memory reaches `end` (exclusive), growing it if needed. */
static bool ensure_memory(uint64_t end) {
    uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) * PAGE_SIZE;
    if (end <= have) return true;
    if (end >= 0x100000000ull) return false; /* wasm32 tops out at 4 GiB; heap_top is 32-bit */
    uint64_t pages = (end - have + PAGE_SIZE - 1) / PAGE_SIZE;
    return __builtin_wasm_memory_grow(0, (size_t)pages) != (size_t)-1;
}

/* First fit from the free list, splitting off the tail when it is big enough to reuse. */
static void *take_free(uint32_t size) {
    for (free_block **link = &free_list; *link; link = &(*link)->next) {
        free_block *b = *link;
        if (b->size < size) continue;
        if (b->size - size >= 2 * ALIGN) {
            free_block *rest = (free_block *)((uint8_t *)b + size);
            rest->next = b->next;
            rest->size = b->size - size;
            *link = rest;
        } else {
            *link = b->next; /* the few spare bytes are lost until the instance ends */
        }
        return b;
    }
    return 0;
}

__attribute__((export_name("dwf_alloc"))) void *dwf_alloc(uint32_t len) {
    heap_init();
    uint64_t size = block_size(len);
    if (size > 0xffffffffull) return 0;
    void *p = take_free((uint32_t)size);
    if (p) return p;
    if (!ensure_memory((uint64_t)heap_top + size)) return 0;
    p = (void *)(uintptr_t)heap_top;
    heap_top += (uint32_t)size;
    return p;
}

/* Gives the newest blocks back to the bump pointer, including freed ones now on top. */
static void lower_top(void) {
    bool moved = true;
    while (moved) {
        moved = false;
        for (free_block **link = &free_list; *link; link = &(*link)->next) {
            free_block *b = *link;
            if ((uint32_t)(uintptr_t)b + b->size == heap_top) {
                heap_top = (uint32_t)(uintptr_t)b;
                *link = b->next;
                moved = true;
                break;
            }
        }
    }
}

__attribute__((export_name("dwf_free"))) void dwf_free(void *ptr, uint32_t len) {
    heap_init();
    uint32_t p = (uint32_t)(uintptr_t)ptr;
    uint64_t size = block_size(len);
    /* Anything that cannot be a live block of ours is ignored rather than trusted. */
    if (p == 0 || p % ALIGN || p < heap_start || (uint64_t)p + size > heap_top) return;
    for (free_block *b = free_list; b; b = b->next) {
        uint32_t start = (uint32_t)(uintptr_t)b;
        if (p < start + b->size && start < p + size) return; /* double free */
    }
    free_block *b = ptr;
    b->size = (uint32_t)size;
    b->next = free_list;
    free_list = b;
    lower_top();
}

_Noreturn void dwf__oom(void) {
    static const char msg[] = "dwf: out of memory (the SDK could not allocate)";
    dwf_host_log(DWF_LOG_ERROR, msg, sizeof msg - 1);
    __builtin_trap();
}

void *dwf__grow(void *ptr, uint32_t old_len, uint32_t new_len) {
    if (!ptr) return dwf__xalloc(new_len);
    uint32_t p = (uint32_t)(uintptr_t)ptr;
    uint64_t old_size = block_size(old_len), new_size = block_size(new_len);
    if ((uint64_t)p + old_size == heap_top) { /* the newest block: extend it where it is */
        if (!ensure_memory((uint64_t)p + new_size)) dwf__oom();
        heap_top = (uint32_t)(p + new_size);
        return ptr;
    }
    void *q = dwf__xalloc(new_len);
    memcpy(q, ptr, old_len);
    dwf_free(ptr, old_len);
    return q;
}

/* ------------------------------------------------------------------------ */
/* libc memory functions. no_builtin stops clang from turning these very    */
/* loops back into calls to themselves.                                     */
/* ------------------------------------------------------------------------ */

__attribute__((no_builtin("memcpy"))) void *memcpy(void *dst, const void *src, size_t n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

__attribute__((no_builtin("memmove"))) void *memmove(void *dst, const void *src, size_t n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        while (n--) d[n] = s[n];
    }
    return dst;
}

__attribute__((no_builtin("memset"))) void *memset(void *dst, int c, size_t n) {
    uint8_t *d = dst;
    while (n--) *d++ = (uint8_t)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x < *y ? -1 : 1;
    return 0;
}
