/*
 * values.c - JS values to msgpack and back, on the C SDK's codec.
 *
 * Step results, outputs, params and payloads cross into the host as msgpack,
 * and a step's result is handed back to the workflow the way a replay would
 * see it (decoded from what was journaled), so a workflow takes the same path
 * on its first run and on every replay. The mapping is JSON's, plus bytes and
 * big integers:
 *
 *   undefined, null -> nil              boolean -> bool
 *   integral number within 2^53 -> int  other number -> float64
 *   bigint -> int (64-bit)              string -> str
 *   Uint8Array, ArrayBuffer -> bin      Array -> array
 *   an object with toJSON() (Date) -> what toJSON returns
 *   Map -> map                          other objects -> map of own enumerable
 *                                       string keys (undefined, functions and
 *                                       symbols left out, as JSON.stringify does)
 *
 * and back: int beyond 2^53 -> bigint, bin -> Uint8Array, map -> plain object.
 */
#include <math.h>

#include "engine.h"

#define MAX_DEPTH 128
#define SAFE_INTEGER 9007199254740991.0 /* 2^53 - 1 */

static bool encode(JSContext *ctx, JSValueConst v, dwf_writer *w, int depth);

static bool too_deep(JSContext *ctx) {
    JS_ThrowRangeError(ctx, "cannot serialize a value nested more than %d levels deep (or "
                            "one that contains itself)", MAX_DEPTH);
    return false;
}

/* Values JSON leaves out of an object. */
static bool skipped_in_objects(JSContext *ctx, JSValueConst v) {
    return JS_IsUndefined(v) || JS_IsSymbol(v) || JS_IsFunction(ctx, v);
}

static bool encode_number(JSContext *ctx, JSValueConst v, dwf_writer *w) {
    double d;
    if (JS_ToFloat64(ctx, &d, v)) return false;
    if (isfinite(d) && d == trunc(d) && fabs(d) <= SAFE_INTEGER) dwf_write_int(w, (int64_t)d);
    else dwf_write_double(w, d);
    return true;
}

static bool encode_string(JSContext *ctx, JSValueConst v, dwf_writer *w) {
    size_t len;
    const char *s = JS_ToCStringLen(ctx, &len, v);
    if (!s) return false;
    dwf_write_strn(w, s, (uint32_t)len);
    JS_FreeCString(ctx, s);
    return true;
}

static bool encode_array(JSContext *ctx, JSValueConst v, dwf_writer *w, int depth) {
    int64_t len;
    if (JS_GetLength(ctx, v, &len)) return false;
    dwf_write_array(w, (uint32_t)len);
    for (int64_t i = 0; i < len; i++) {
        JSValue item = JS_GetPropertyUint32(ctx, v, (uint32_t)i);
        bool ok = !JS_IsException(item) &&
                  (skipped_in_objects(ctx, item) ? (dwf_write_nil(w), true)
                                                 : encode(ctx, item, w, depth + 1));
        JS_FreeValue(ctx, item);
        if (!ok) return false;
    }
    return true;
}

/* Map: entries() as [key, value] pairs. */
static bool encode_map(JSContext *ctx, JSValueConst v, dwf_writer *w, int depth) {
    JSValue pairs = JS_Eval(ctx, "(m) => Array.from(m)", 20, "<dwf>", 0);
    JSValue list = JS_IsException(pairs) ? pairs : JS_Call(ctx, pairs, JS_UNDEFINED, 1, &v);
    JS_FreeValue(ctx, pairs);
    if (JS_IsException(list)) return false;
    int64_t len;
    bool ok = !JS_GetLength(ctx, list, &len);
    if (ok) dwf_write_map(w, (uint32_t)len);
    for (int64_t i = 0; ok && i < len; i++) {
        JSValue pair = JS_GetPropertyUint32(ctx, list, (uint32_t)i);
        JSValue key = JS_GetPropertyUint32(ctx, pair, 0), value = JS_GetPropertyUint32(ctx, pair, 1);
        ok = encode(ctx, key, w, depth + 1) && encode(ctx, value, w, depth + 1);
        JS_FreeValue(ctx, key);
        JS_FreeValue(ctx, value);
        JS_FreeValue(ctx, pair);
    }
    JS_FreeValue(ctx, list);
    return ok;
}

static bool encode_object(JSContext *ctx, JSValueConst v, dwf_writer *w, int depth) {
    JSPropertyEnum *props;
    uint32_t count;
    if (JS_GetOwnPropertyNames(ctx, &props, &count, v, JS_GPN_STRING_MASK | JS_GPN_ENUM_ONLY))
        return false;
    /* Values JSON would leave out are not counted: encode into a side buffer first. */
    dwf_writer body = {0};
    uint32_t kept = 0;
    bool ok = true;
    for (uint32_t i = 0; ok && i < count; i++) {
        JSValue value = JS_GetProperty(ctx, v, props[i].atom);
        if (JS_IsException(value)) {
            ok = false;
        } else if (!skipped_in_objects(ctx, value)) {
            JSValue key = JS_AtomToString(ctx, props[i].atom);
            ok = encode_string(ctx, key, &body) && encode(ctx, value, &body, depth + 1);
            JS_FreeValue(ctx, key);
            kept++;
        }
        JS_FreeValue(ctx, value);
    }
    JS_FreePropertyEnum(ctx, props, count);
    if (ok) {
        dwf_write_map(w, kept);
        dwf_write_raw(w, dwf_writer_bytes(&body));
    }
    dwf_writer_release(&body);
    return ok;
}

/* An object's toJSON(), when it has one (Date has). */
static bool encode_to_json(JSContext *ctx, JSValueConst v, JSValueConst to_json, dwf_writer *w,
                           int depth) {
    JSValue replaced = JS_Call(ctx, to_json, v, 0, NULL);
    if (JS_IsException(replaced)) return false;
    bool ok = encode(ctx, replaced, w, depth + 1);
    JS_FreeValue(ctx, replaced);
    return ok;
}

static bool encode(JSContext *ctx, JSValueConst v, dwf_writer *w, int depth) {
    if (depth > MAX_DEPTH) return too_deep(ctx);
    if (JS_IsUndefined(v) || JS_IsNull(v)) {
        dwf_write_nil(w);
        return true;
    }
    if (JS_IsBool(v)) {
        dwf_write_bool(w, JS_ToBool(ctx, v));
        return true;
    }
    if (JS_IsNumber(v)) return encode_number(ctx, v, w);
    if (JS_IsBigInt(v)) {
        int64_t i;
        if (JS_ToBigInt64(ctx, &i, v)) return false;
        dwf_write_int(w, i);
        return true;
    }
    if (JS_IsString(v)) return encode_string(ctx, v, w);
    if (!JS_IsObject(v) || JS_IsFunction(ctx, v)) {
        JS_ThrowTypeError(ctx, "cannot serialize a %s (results, outputs and payloads are "
                               "JSON-like values, bigints and Uint8Arrays)",
                          JS_IsSymbol(v) ? "symbol" : "function");
        return false;
    }
    size_t size;
    uint8_t *bytes;
    if (JS_GetTypedArrayType(v) == JS_TYPED_ARRAY_UINT8 &&
        (bytes = JS_GetUint8Array(ctx, &size, v))) {
        dwf_write_bin(w, bytes, (uint32_t)size);
        return true;
    }
    if (JS_IsArrayBuffer(v) && (bytes = JS_GetArrayBuffer(ctx, &size, v))) {
        dwf_write_bin(w, bytes, (uint32_t)size);
        return true;
    }
    if (JS_IsArray(v)) return encode_array(ctx, v, w, depth);
    if (JS_IsMap(v)) return encode_map(ctx, v, w, depth);
    JSValue to_json = JS_GetPropertyStr(ctx, v, "toJSON");
    if (JS_IsException(to_json)) return false;
    bool ok = JS_IsFunction(ctx, to_json) ? encode_to_json(ctx, v, to_json, w, depth)
                                          : encode_object(ctx, v, w, depth);
    JS_FreeValue(ctx, to_json);
    return ok;
}

bool dwfjs_encode(JSContext *ctx, JSValueConst value, dwf_writer *w) {
    return encode(ctx, value, w, 0);
}

/* ------------------------------------------------------------------------ */
/* msgpack -> JS                                                            */
/* ------------------------------------------------------------------------ */

static JSValue malformed(JSContext *ctx) {
    return JS_ThrowTypeError(ctx, "dwf: malformed msgpack from the host");
}

static JSValue decode(JSContext *ctx, dwf_reader *r, int depth);

static JSValue decode_int(JSContext *ctx, dwf_reader *r) {
    int64_t i;
    uint64_t u;
    if (dwf_read_int(r, &i))
        return (i >= -(int64_t)SAFE_INTEGER && i <= (int64_t)SAFE_INTEGER) ? JS_NewInt64(ctx, i)
                                                                           : JS_NewBigInt64(ctx, i);
    if (dwf_read_uint(r, &u)) return JS_NewBigUint64(ctx, u);
    return malformed(ctx);
}

static JSValue decode_array(JSContext *ctx, dwf_reader *r, int depth) {
    uint32_t count;
    if (!dwf_read_array(r, &count)) return malformed(ctx);
    JSValue array = JS_NewArray(ctx);
    for (uint32_t i = 0; i < count; i++) {
        JSValue item = decode(ctx, r, depth + 1);
        if (JS_IsException(item)) {
            JS_FreeValue(ctx, array);
            return item;
        }
        JS_SetPropertyUint32(ctx, array, i, item);
    }
    return array;
}

static JSValue decode_map(JSContext *ctx, dwf_reader *r, int depth) {
    uint32_t count;
    if (!dwf_read_map(r, &count)) return malformed(ctx);
    JSValue object = JS_NewObject(ctx);
    for (uint32_t i = 0; i < count; i++) {
        JSValue key = decode(ctx, r, depth + 1);
        if (JS_IsException(key)) {
            JS_FreeValue(ctx, object);
            return key;
        }
        JSValue value = decode(ctx, r, depth + 1);
        JSAtom atom = JS_IsException(value) ? JS_ATOM_NULL : JS_ValueToAtom(ctx, key);
        JS_FreeValue(ctx, key);
        if (atom == JS_ATOM_NULL) {
            JS_FreeValue(ctx, value);
            JS_FreeValue(ctx, object);
            return JS_EXCEPTION;
        }
        JS_DefinePropertyValue(ctx, object, atom, value, JS_PROP_C_W_E);
        JS_FreeAtom(ctx, atom);
    }
    return object;
}

static JSValue decode(JSContext *ctx, dwf_reader *r, int depth) {
    if (depth > MAX_DEPTH) return JS_ThrowRangeError(ctx, "dwf: a value nested too deeply");
    const char *s;
    const uint8_t *b;
    uint32_t len;
    bool flag;
    double d;
    switch (dwf_peek(r)) {
    case DWF_T_NIL:
        dwf_read_nil(r);
        return JS_NULL;
    case DWF_T_BOOL:
        dwf_read_bool(r, &flag);
        return JS_NewBool(ctx, flag);
    case DWF_T_INT:
        return decode_int(ctx, r);
    case DWF_T_FLOAT:
        dwf_read_double(r, &d);
        return JS_NewFloat64(ctx, d);
    case DWF_T_STR:
        dwf_read_str(r, &s, &len);
        return JS_NewStringLen(ctx, s, len);
    case DWF_T_BIN:
        dwf_read_bin(r, &b, &len);
        return JS_NewUint8ArrayCopy(ctx, b, len);
    case DWF_T_ARRAY:
        return decode_array(ctx, r, depth);
    case DWF_T_MAP:
        return decode_map(ctx, r, depth);
    case DWF_T_EXT:
        dwf_skip(r);
        return JS_NULL;
    default:
        return malformed(ctx);
    }
}

JSValue dwfjs_decode(JSContext *ctx, dwf_reader *r) { return decode(ctx, r, 0); }

JSValue dwfjs_decode_bytes(JSContext *ctx, dwf_bytes bytes) {
    if (!bytes.len) return JS_NULL;
    dwf_reader r = dwf_reader_new(bytes);
    return dwfjs_decode(ctx, &r);
}
