/*
 * dwf_msgpack.c - the msgpack writer and the bounds-checked reader.
 *
 * Only what payloads need: nil, bool, int/uint, float, str, bin, array, map
 * (ext values are skipped, not decoded). The reader treats its input as
 * hostile: every length is checked against the bytes that remain before it
 * is used, and skipping nested values is iterative, so deep nesting cannot
 * overflow the stack.
 */
#include "dwf_internal.h"

/* ------------------------------------------------------------------------ */
/* Writer                                                                   */
/* ------------------------------------------------------------------------ */

/* Appends n bytes of room and returns where they start. */
static uint8_t *reserve(dwf_writer *w, uint32_t n) {
    uint64_t need = (uint64_t)w->len + n;
    if (need > w->cap) {
        if (need > 0xfffffff0u) dwf__oom();
        uint64_t cap = w->cap ? (uint64_t)w->cap * 2 : 64;
        if (cap < need || cap > 0xfffffff0u) cap = need;
        w->data = dwf__grow(w->data, w->cap, (uint32_t)cap);
        w->cap = (uint32_t)cap;
    }
    uint8_t *p = w->data + w->len;
    w->len += n;
    return p;
}

/* A tag byte followed by the low `n` bytes of v, big-endian (msgpack's byte order). */
static void put_tagged(dwf_writer *w, uint8_t tag, uint64_t v, uint32_t n) {
    uint8_t *p = reserve(w, 1 + n);
    p[0] = tag;
    for (uint32_t i = 0; i < n; i++) p[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

void dwf_write_nil(dwf_writer *w) { *reserve(w, 1) = 0xc0; }

void dwf_write_bool(dwf_writer *w, bool v) { *reserve(w, 1) = v ? 0xc3 : 0xc2; }

void dwf_write_uint(dwf_writer *w, uint64_t v) {
    if (v < 0x80) *reserve(w, 1) = (uint8_t)v;
    else if (v <= 0xff) put_tagged(w, 0xcc, v, 1);
    else if (v <= 0xffff) put_tagged(w, 0xcd, v, 2);
    else if (v <= 0xffffffffu) put_tagged(w, 0xce, v, 4);
    else put_tagged(w, 0xcf, v, 8);
}

void dwf_write_int(dwf_writer *w, int64_t v) {
    if (v >= 0) dwf_write_uint(w, (uint64_t)v);
    else if (v >= -32) *reserve(w, 1) = (uint8_t)(int8_t)v; /* negative fixint */
    else if (v >= -128) put_tagged(w, 0xd0, (uint64_t)v, 1);
    else if (v >= -32768) put_tagged(w, 0xd1, (uint64_t)v, 2);
    else if (v >= -2147483647LL - 1) put_tagged(w, 0xd2, (uint64_t)v, 4);
    else put_tagged(w, 0xd3, (uint64_t)v, 8);
}

void dwf_write_double(dwf_writer *w, double v) {
    uint64_t bits;
    __builtin_memcpy(&bits, &v, sizeof bits);
    put_tagged(w, 0xcb, bits, 8);
}

/* A str/bin/array/map header: the fix form when `fix_max` allows, else 8/16/32-bit. */
static void put_header(dwf_writer *w, uint8_t fix, uint32_t fix_max, uint8_t tag8, uint8_t tag16,
                       uint8_t tag32, uint32_t n) {
    if (n <= fix_max) *reserve(w, 1) = (uint8_t)(fix | n);
    else if (tag8 && n <= 0xff) put_tagged(w, tag8, n, 1);
    else if (n <= 0xffff) put_tagged(w, tag16, n, 2);
    else put_tagged(w, tag32, n, 4);
}

void dwf_write_strn(dwf_writer *w, const char *s, uint32_t len) {
    put_header(w, 0xa0, 31, 0xd9, 0xda, 0xdb, len);
    if (len) memcpy(reserve(w, len), s, len);
}

void dwf_write_str(dwf_writer *w, const char *s) { dwf_write_strn(w, s, dwf_strlen(s)); }

void dwf_write_bin(dwf_writer *w, const void *p, uint32_t len) {
    if (len <= 0xff) put_tagged(w, 0xc4, len, 1);
    else if (len <= 0xffff) put_tagged(w, 0xc5, len, 2);
    else put_tagged(w, 0xc6, len, 4);
    if (len) memcpy(reserve(w, len), p, len);
}

void dwf_write_array(dwf_writer *w, uint32_t count) {
    put_header(w, 0x90, 15, 0, 0xdc, 0xdd, count);
}

void dwf_write_map(dwf_writer *w, uint32_t count) { put_header(w, 0x80, 15, 0, 0xde, 0xdf, count); }

void dwf_write_raw(dwf_writer *w, dwf_bytes encoded) {
    if (encoded.len) memcpy(reserve(w, encoded.len), encoded.ptr, encoded.len);
}

dwf_bytes dwf_writer_bytes(const dwf_writer *w) { return (dwf_bytes){w->data, w->len}; }

void dwf_writer_reset(dwf_writer *w) { w->len = 0; }

void dwf_writer_release(dwf_writer *w) {
    dwf_free(w->data, w->cap);
    *w = (dwf_writer){0};
}

/* ------------------------------------------------------------------------ */
/* Reader                                                                   */
/* ------------------------------------------------------------------------ */

/* One decoded header: what the value is and how many bytes it spans. */
typedef struct {
    dwf_type type;
    uint32_t head; /* tag byte plus length / value bytes */
    uint32_t body; /* bytes after the header: str/bin data, ext type + data */
    uint64_t arg;  /* int bits, bool, float bits, element count (map: pairs) */
    bool negative; /* DWF_T_INT: arg holds a negative int64 */
    bool is_f32;   /* DWF_T_FLOAT: arg holds float32 bits */
} mp_head;

static uint64_t get_be(const uint8_t *p, uint32_t n) {
    uint64_t v = 0;
    for (uint32_t i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* Sizes of the length/value field that follows a tag, for tags 0xc4..0xdf. */
static const uint8_t field_size[28] = {
    1, 2, 4,       /* c4-c6 bin 8/16/32 */
    1, 2, 4,       /* c7-c9 ext 8/16/32 */
    4, 8,          /* ca-cb float 32/64 */
    1, 2, 4, 8,    /* cc-cf uint */
    1, 2, 4, 8,    /* d0-d3 int */
    0, 0, 0, 0, 0, /* d4-d8 fixext: no length field */
    1, 2, 4,       /* d9-db str */
    2, 4,          /* dc-dd array */
    2, 4,          /* de-df map */
};

/* Decodes the header at the cursor. False at the end or on malformed/truncated input. */
static bool parse_head(const dwf_reader *r, mp_head *h) {
    if (r->pos >= r->len) return false;
    const uint8_t *p = r->buf + r->pos;
    uint32_t avail = r->len - r->pos;
    uint8_t tag = p[0];
    *h = (mp_head){.head = 1};

    if (tag <= 0x7f) { /* positive fixint */
        h->type = DWF_T_INT;
        h->arg = tag;
        return true;
    }
    if (tag >= 0xe0) { /* negative fixint */
        h->type = DWF_T_INT;
        h->arg = (uint64_t)(int64_t)(int8_t)tag;
        h->negative = true;
        return true;
    }
    if (tag <= 0x8f) h->type = DWF_T_MAP, h->arg = tag & 0x0f;
    else if (tag <= 0x9f) h->type = DWF_T_ARRAY, h->arg = tag & 0x0f;
    else if (tag <= 0xbf) h->type = DWF_T_STR, h->body = tag & 0x1f;
    else if (tag == 0xc0) h->type = DWF_T_NIL;
    else if (tag == 0xc1) return false; /* never used by msgpack */
    else if (tag <= 0xc3) h->type = DWF_T_BOOL, h->arg = tag & 1;
    else {
        uint32_t n = field_size[tag - 0xc4];
        if (avail - 1 < n) return false;
        uint64_t v = get_be(p + 1, n);
        h->head = 1 + n;
        if (tag <= 0xc6) h->type = DWF_T_BIN, h->body = (uint32_t)v;
        else if (tag <= 0xc9) { /* ext: type byte + data; v < 2^32 so no overflow */
            if (v + 1 > avail - h->head) return false;
            h->type = DWF_T_EXT, h->body = (uint32_t)v + 1;
        } else if (tag <= 0xcb) h->type = DWF_T_FLOAT, h->arg = v, h->is_f32 = tag == 0xca;
        else if (tag <= 0xcf) h->type = DWF_T_INT, h->arg = v;
        else if (tag <= 0xd3) { /* sign-extend an n-byte two's complement value */
            uint32_t shift = 64 - 8 * n;
            int64_t s = (int64_t)(v << shift) >> shift;
            h->type = DWF_T_INT, h->arg = (uint64_t)s, h->negative = s < 0;
        } else if (tag <= 0xd8) h->type = DWF_T_EXT, h->body = 1 + (1u << (tag - 0xd4));
        else if (tag <= 0xdb) h->type = DWF_T_STR, h->body = (uint32_t)v;
        else if (tag <= 0xdd) h->type = DWF_T_ARRAY, h->arg = v;
        else h->type = DWF_T_MAP, h->arg = v;
    }

    if (h->head > avail || h->body > avail - h->head) return false;
    /* Every element takes at least one byte: reject impossible counts up front. */
    uint64_t elements = h->type == DWF_T_MAP ? 2 * h->arg : h->type == DWF_T_ARRAY ? h->arg : 0;
    return elements <= avail - h->head;
}

/* Parses a header of the wanted type and moves past the whole header + body. */
static bool take(dwf_reader *r, dwf_type want, mp_head *h) {
    if (!parse_head(r, h) || h->type != want) return false;
    r->pos += h->head + h->body;
    return true;
}

dwf_reader dwf_reader_new(dwf_bytes b) { return (dwf_reader){b.ptr, b.ptr ? b.len : 0, 0}; }

dwf_type dwf_peek(const dwf_reader *r) {
    mp_head h;
    return parse_head(r, &h) ? h.type : DWF_T_INVALID;
}

bool dwf_at_end(const dwf_reader *r) { return r->pos >= r->len; }

bool dwf_read_nil(dwf_reader *r) {
    mp_head h;
    return take(r, DWF_T_NIL, &h);
}

bool dwf_read_bool(dwf_reader *r, bool *out) {
    mp_head h;
    if (!take(r, DWF_T_BOOL, &h)) return false;
    *out = h.arg != 0;
    return true;
}

bool dwf_read_int(dwf_reader *r, int64_t *out) {
    mp_head h;
    if (!parse_head(r, &h) || h.type != DWF_T_INT) return false;
    if (!h.negative && h.arg > (uint64_t)INT64_MAX) return false;
    r->pos += h.head;
    *out = (int64_t)h.arg;
    return true;
}

bool dwf_read_uint(dwf_reader *r, uint64_t *out) {
    mp_head h;
    if (!parse_head(r, &h) || h.type != DWF_T_INT || h.negative) return false;
    r->pos += h.head;
    *out = h.arg;
    return true;
}

bool dwf_read_double(dwf_reader *r, double *out) {
    mp_head h;
    if (!parse_head(r, &h)) return false;
    if (h.type == DWF_T_INT) *out = h.negative ? (double)(int64_t)h.arg : (double)h.arg;
    else if (h.type != DWF_T_FLOAT) return false;
    else if (h.is_f32) {
        uint32_t bits = (uint32_t)h.arg;
        float f;
        __builtin_memcpy(&f, &bits, sizeof f);
        *out = f;
    } else __builtin_memcpy(out, &h.arg, sizeof *out);
    r->pos += h.head;
    return true;
}

bool dwf_read_str(dwf_reader *r, const char **out, uint32_t *len) {
    mp_head h;
    uint32_t start = r->pos;
    if (!take(r, DWF_T_STR, &h)) return false;
    *out = (const char *)r->buf + start + h.head;
    *len = h.body;
    return true;
}

bool dwf_read_bin(dwf_reader *r, const uint8_t **out, uint32_t *len) {
    mp_head h;
    uint32_t start = r->pos;
    if (!take(r, DWF_T_BIN, &h)) return false;
    *out = r->buf + start + h.head;
    *len = h.body;
    return true;
}

bool dwf_read_array(dwf_reader *r, uint32_t *count) {
    mp_head h;
    if (!take(r, DWF_T_ARRAY, &h)) return false;
    *count = (uint32_t)h.arg;
    return true;
}

bool dwf_read_map(dwf_reader *r, uint32_t *count) {
    mp_head h;
    if (!take(r, DWF_T_MAP, &h)) return false;
    *count = (uint32_t)h.arg;
    return true;
}

bool dwf_skip(dwf_reader *r) {
    /* Count values still to skip instead of recursing into containers. */
    dwf_reader c = *r;
    uint64_t pending = 1;
    while (pending) {
        mp_head h;
        if (!parse_head(&c, &h)) return false;
        c.pos += h.head + h.body;
        pending--;
        if (h.type == DWF_T_ARRAY) pending += h.arg;
        else if (h.type == DWF_T_MAP) pending += 2 * h.arg;
        if (pending > c.len - c.pos) return false; /* cannot fit: truncated */
    }
    r->pos = c.pos;
    return true;
}

dwf_bytes dwf_value_bytes(const dwf_reader *r) {
    dwf_reader c = *r;
    if (!dwf_skip(&c)) return (dwf_bytes){0, 0};
    return (dwf_bytes){r->buf + r->pos, c.pos - r->pos};
}

bool dwf_find(const dwf_reader *map, const char *key, dwf_reader *value) {
    dwf_reader c = *map;
    uint32_t count, key_len = dwf_strlen(key);
    if (!dwf_read_map(&c, &count)) return false;
    for (uint32_t i = 0; i < count; i++) {
        const char *k;
        uint32_t k_len;
        bool match = false;
        if (dwf_read_str(&c, &k, &k_len)) match = k_len == key_len && !memcmp(k, key, k_len);
        else if (!dwf_skip(&c)) return false; /* a non-string key: not ours */
        uint32_t start = c.pos;
        if (!dwf_skip(&c)) return false;
        if (match) {
            *value = (dwf_reader){c.buf + start, c.pos - start, 0};
            return true;
        }
    }
    return false;
}

int64_t dwf_get_int(const dwf_reader *map, const char *key, int64_t def) {
    dwf_reader v;
    int64_t out;
    return dwf_find(map, key, &v) && dwf_read_int(&v, &out) ? out : def;
}

bool dwf_get_bool(const dwf_reader *map, const char *key, bool def) {
    dwf_reader v;
    bool out;
    return dwf_find(map, key, &v) && dwf_read_bool(&v, &out) ? out : def;
}

const char *dwf_get_str(const dwf_reader *map, const char *key, const char *def) {
    dwf_reader v;
    const char *s;
    uint32_t len;
    if (!dwf_find(map, key, &v) || !dwf_read_str(&v, &s, &len)) return def;
    return dwf__strndup(s, len);
}

const char *dwf__header(const dwf_reader *headers, const char *name) {
    uint32_t n = dwf_strlen(name);
    char *lower = dwf__strndup(name, n);
    for (uint32_t i = 0; i < n; i++)
        if (lower[i] >= 'A' && lower[i] <= 'Z') lower[i] = (char)(lower[i] - 'A' + 'a');
    return dwf_get_str(headers, lower, NULL);
}
