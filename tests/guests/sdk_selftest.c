/*
 * sdk_selftest.c - the C SDK checking itself from inside a guest: the msgpack
 * reader on malformed input, codec round trips at the edges, the allocator.
 *
 * Workflow "selftest" (no params): outputs "ok", or fails with
 * "SelfTestFailed" and the names of the checks that failed in the message.
 * No durable calls, so any host can run it in one invocation.
 */
#include "dwf.h"

static const char *failed = "";

static void check(bool ok, const char *what) {
    if (!ok) failed = dwf_cat(failed, *failed ? ", " : "", what, NULL);
}

static dwf_reader over(const uint8_t *p, uint32_t len) {
    return dwf_reader_new((dwf_bytes){p, len});
}

/* ---- malformed input: every read fails and the cursor stays put ---------- */

typedef struct {
    const char *name;
    const uint8_t *bytes;
    uint32_t len;
} bad_case;

#define BAD(name, ...) {name, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})}

static const bad_case bad_cases[] = {
    BAD("reserved-c1", 0xc1),
    BAD("str8-truncated", 0xd9, 0x10, 'a', 'b'),
    BAD("str32-huge", 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'),
    BAD("bin32-huge", 0xc6, 0xff, 0xff, 0xff, 0xf0),
    BAD("array32-huge", 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0),
    BAD("map32-huge", 0xdf, 0x7f, 0xff, 0xff, 0xff),
    BAD("map-no-value", 0x81, 0xa1, 'k'),
    BAD("array-short", 0x93, 0x01, 0x02),
    BAD("ext32-huge", 0xc9, 0xff, 0xff, 0xff, 0xff, 0x01),
    BAD("fixext16-short", 0xd8, 0x01, 'a'),
    BAD("uint64-short", 0xcf, 0xff, 0xff),
    BAD("float64-short", 0xcb, 0x40, 0x09),
    BAD("nested-bad", 0x92, 0x91, 0xc1, 0xc0),
};

static void malformed_input(void) {
    dwf_reader empty = over(0, 0);
    check(dwf_peek(&empty) == DWF_T_INVALID && !dwf_skip(&empty), "empty-input");

    for (uint32_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        dwf_reader r = over(c->bytes, c->len), v;
        int64_t n;
        const char *s;
        uint32_t len;
        bool rejected = !dwf_skip(&r) && dwf_value_bytes(&r).len == 0 &&
                        !dwf_find(&r, "k", &v) && !dwf_read_int(&r, &n) &&
                        !dwf_read_str(&r, &s, &len);
        /* Headers that are whole but promise more than there is must fail too. */
        dwf_type t = dwf_peek(&r);
        if (t == DWF_T_ARRAY || t == DWF_T_MAP) {
            uint32_t count;
            dwf_reader h = r;
            if (dwf_read_array(&h, &count) || dwf_read_map(&h, &count))
                rejected = rejected && count <= c->len; /* a count that cannot fit is rejected */
        }
        check(rejected && r.pos == 0, c->name);
    }
}

/* ---- round trips at the edges ------------------------------------------- */

static void round_trips(void) {
    dwf_writer w = {0};
    dwf_write_int(&w, INT64_MIN);
    dwf_write_int(&w, INT64_MAX);
    dwf_write_uint(&w, UINT64_MAX);
    dwf_write_int(&w, -33);
    dwf_write_double(&w, -2.5);
    dwf_write_str(&w, "");
    dwf_write_bin(&w, "ab", 2);
    dwf_reader r = dwf_reader_new(dwf_writer_bytes(&w));
    int64_t i;
    uint64_t u;
    double d;
    const char *s;
    const uint8_t *b;
    uint32_t len;
    check(dwf_read_int(&r, &i) && i == INT64_MIN, "int64-min");
    check(dwf_read_int(&r, &i) && i == INT64_MAX, "int64-max");
    check(!dwf_read_int(&r, &i) && dwf_read_uint(&r, &u) && u == UINT64_MAX, "uint64-max");
    check(!dwf_read_uint(&r, &u) && dwf_read_int(&r, &i) && i == -33, "negative-not-uint");
    check(dwf_read_double(&r, &d) && d == -2.5, "double");
    check(dwf_read_str(&r, &s, &len) && len == 0, "empty-str");
    check(dwf_read_bin(&r, &b, &len) && len == 2 && b[0] == 'a', "bin");
    check(dwf_at_end(&r), "at-end");

    static const uint8_t f32[] = {0xca, 0x3f, 0xc0, 0x00, 0x00}; /* 1.5f */
    r = over(f32, sizeof f32);
    check(dwf_read_double(&r, &d) && d == 1.5, "float32");

    char num[DWF_ITOA_SIZE];
    check(dwf_streq(dwf_itoa(INT64_MIN, num), "-9223372036854775808"), "itoa-min");
    dwf_writer_release(&w);
}

/* Deep nesting is skipped without recursion, so it cannot overflow the stack. */
static void deep_nesting(void) {
    enum { DEPTH = 20000 }; /* a recursive skip would need far more than the 64 KiB stack */
    uint8_t *deep = dwf_alloc(DEPTH + 1);
    if (!deep) {
        check(false, "deep-alloc");
        return;
    }
    for (uint32_t i = 0; i < DEPTH; i++) deep[i] = 0x91; /* [[[...]]] */
    deep[DEPTH] = 0xc0;
    dwf_reader r = over(deep, DEPTH + 1);
    check(dwf_skip(&r) && r.pos == DEPTH + 1, "deep-skip");
    r = over(deep, DEPTH); /* innermost value missing */
    check(!dwf_skip(&r) && r.pos == 0, "deep-truncated");
    dwf_free(deep, DEPTH + 1);
}

static void map_lookup(void) {
    /* {"ab": 1, 7: 2, "a": 3, "a": 4} */
    static const uint8_t m[] = {0x84, 0xa2, 'a', 'b', 0x01, 0x07, 0x02, 0xa1, 'a', 0x03, 0xa1, 'a', 0x04};
    dwf_reader r = over(m, sizeof m);
    check(dwf_get_int(&r, "a", -1) == 3, "find-first-exact-key");
    check(dwf_get_int(&r, "ab", -1) == 1, "find-longer-key");
    check(dwf_get_int(&r, "b", -1) == -1, "find-missing");
    check(r.pos == 0, "find-does-not-advance");
    dwf_reader v;
    check(dwf_find(&r, "a", &v) && v.len == 1 && v.pos == 0, "find-value-span");
}

static void allocator(void) {
    uint8_t *a = dwf_alloc(100), *b = dwf_alloc(3);
    check(a && b && ((uintptr_t)a & 7) == 0 && ((uintptr_t)b & 7) == 0, "alloc-aligned");
    check(dwf_alloc(0) != 0, "alloc-zero-is-not-null");
    check(dwf_alloc(0xfffffff0u) == 0, "alloc-too-big-is-null");
    dwf_free(a, 100);
    dwf_free(a, 100);                         /* double free: ignored */
    dwf_free((void *)16, 100);                /* not heap memory: ignored */
    dwf_free((void *)(uintptr_t)0x7ff00000u, 8); /* past the heap: ignored */
    dwf_free(0, 0);
    uint8_t *c = dwf_alloc(100), *d = dwf_alloc(100);
    check(c == a && d != a, "free-list-reuse-once");
    uint32_t pages = (uint32_t)__builtin_wasm_memory_size(0);
    for (int i = 0; i < 200; i++) {
        void *x = dwf_alloc(300000);
        check(x != 0, "churn-alloc");
        dwf_free(x, 300000);
    }
    check(__builtin_wasm_memory_size(0) <= pages + 5, "churn-reuses-memory");
}

static int selftest(const dwf_input *in) {
    (void)in;
    malformed_input();
    round_trips();
    deep_nesting();
    map_lookup();
    allocator();
    if (*failed) return dwf_fail("SelfTestFailed", failed);
    dwf_writer w = {0};
    dwf_write_str(&w, "ok");
    return dwf_output(dwf_writer_bytes(&w));
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("selftest", selftest),
)
