/*
 * natives.c - the native functions the TypeScript SDK (guest_sdk/js/sdk) is
 * built on, as the global `__dwf` (the SDK takes it and deletes the global).
 * Each is a thin shell over the C SDK: arguments from JS, one durable call
 * (guest_sdk/c/dwf_durable.c), fetch binding call (dwf_fetch.c) or outbound
 * request (http_fetch, proposal 0003), the result
 * back as JS. Durable outcomes come back as {ok: true, value} or
 * {ok: false, name, message}; a call that suspends the invocation never
 * returns (the host traps out of the guest and runs it again later).
 */
#include "engine.h"

typedef JSValueConst Arg;

/* The step whose body is running (step batches keep pointing at its name). */
static dwf__step_attempt current;
static const char *current_name;
static JSContext *current_ctx; /* owns current_name */
static bool step_open;

static JSValue not_ready(JSContext *ctx) {
    return JS_ThrowInternalError(ctx, "durable calls, the fetch binding and the journaled clock "
                                      "are not available while the module loads (top-level "
                                      "code): call them from run() or fetch()");
}

#define REQUIRE_READY()                                                                    \
    do {                                                                                   \
        if (!dwfjs_ready) return not_ready(ctx);                                           \
    } while (0)

/* An argument as a NUL-terminated string, freed by the caller with JS_FreeCString. */
static const char *str_arg(JSContext *ctx, int argc, Arg *argv, int i) {
    return JS_ToCString(ctx, i < argc ? argv[i] : JS_UNDEFINED);
}

static int64_t int_arg(JSContext *ctx, int argc, Arg *argv, int i, int64_t def) {
    int64_t v;
    if (i >= argc || JS_IsUndefined(argv[i]) || JS_IsNull(argv[i])) return def;
    return JS_ToInt64(ctx, &v, argv[i]) ? def : v;
}

/* A JS value as msgpack; false with an exception pending when it cannot be. */
static bool encode_arg(JSContext *ctx, int argc, Arg *argv, int i, dwf_writer *w) {
    return dwfjs_encode(ctx, i < argc ? argv[i] : JS_UNDEFINED, w);
}

/*
 * The arguments of a native call, converted once and released by args_release:
 * `spec` has one letter per argument, in order: 's' a string, 'o' an optional string
 * (NULL unless a JS string is given), 'p' a payload (any value, encoded as msgpack).
 * False with a JS exception pending when one cannot be converted.
 */
typedef struct {
    const char *s[4];
    int strings;
    dwf_writer payload;
} call_args;

static bool args_take(JSContext *ctx, int argc, Arg *argv, const char *spec, call_args *a) {
    *a = (call_args){0};
    for (int i = 0; spec[i]; i++) {
        JSValueConst value = i < argc ? argv[i] : JS_UNDEFINED;
        if (spec[i] == 'p') {
            if (!dwfjs_encode(ctx, value, &a->payload)) return false;
            continue;
        }
        const char *text = spec[i] == 'o' && !JS_IsString(value) ? NULL : JS_ToCString(ctx, value);
        if (spec[i] == 's' && !text) return false;
        a->s[a->strings++] = text;
    }
    return true;
}

static void args_release(JSContext *ctx, call_args *a) {
    for (int i = 0; i < a->strings; i++) JS_FreeCString(ctx, a->s[i]);
    dwf_writer_release(&a->payload);
}

static dwf_bytes payload_of(const call_args *a) { return dwf_writer_bytes(&a->payload); }

#define TAKE_ARGS(spec, args)                                                              \
    do {                                                                                   \
        if (!args_take(ctx, argc, argv, (spec), &(args))) {                                \
            args_release(ctx, &(args));                                                    \
            return JS_EXCEPTION;                                                           \
        }                                                                                  \
    } while (0)

/* {ok: true, value} or {ok: false, name, message}. */
static JSValue outcome(JSContext *ctx, dwf_result r) {
    JSValue o = JS_NewObject(ctx);
    JS_SetPropertyStr(ctx, o, "ok", JS_NewBool(ctx, r.ok));
    if (r.ok) {
        JSValue value = dwfjs_decode_bytes(ctx, dwf_value_bytes(&r.value));
        if (JS_IsException(value)) {
            JS_FreeValue(ctx, o);
            return value;
        }
        JS_SetPropertyStr(ctx, o, "value", value);
    } else {
        JS_SetPropertyStr(ctx, o, "name", JS_NewString(ctx, r.error.name ? r.error.name : ""));
        JS_SetPropertyStr(ctx, o, "message",
                          JS_NewString(ctx, r.error.message ? r.error.message : ""));
        JS_SetPropertyStr(ctx, o, "retryable", JS_NewBool(ctx, r.error.retryable));
    }
    return o;
}

/* log(level, text): not journaled; the host tags it with the instance and step. */
static JSValue js_log(JSContext *ctx, JSValueConst this_val, int argc, Arg *argv) {
    (void)this_val;
    if (!dwfjs_ready) return JS_UNDEFINED; /* Wizer's snapshot cannot call the host */
    size_t len;
    const char *text = JS_ToCStringLen(ctx, &len, argc > 1 ? argv[1] : JS_UNDEFINED);
    if (!text) return JS_EXCEPTION;
    dwf_host_log((int32_t)int_arg(ctx, argc, argv, 0, DWF_LOG_INFO), text, (uint32_t)len);
    JS_FreeCString(ctx, text);
    return JS_UNDEFINED;
}

/* setOutput(value): the workflow's output, or a fetch handler's response map. */
static JSValue js_set_output(JSContext *ctx, JSValueConst this_val, int argc, Arg *argv) {
    (void)this_val;
    call_args a;
    TAKE_ARGS("p", a);
    dwf_output(payload_of(&a));
    args_release(ctx, &a);
    return JS_UNDEFINED;
}

/* setError(name, message): why the workflow (or fetch handler) failed. */
static JSValue js_set_error(JSContext *ctx, JSValueConst this_val, int argc, Arg *argv) {
    (void)this_val;
    call_args a;
    TAKE_ARGS("ss", a);
    dwf_fail(a.s[0], a.s[1]);
    args_release(ctx, &a);
    return JS_UNDEFINED;
}

/*
 * stepBegin(name, limit, delayMs, backoff, timeoutMs): the attempt number (run the
 * body now, then stepEnd) or the recorded outcome. -1 / null keep a host default.
 */
static JSValue js_step_begin(JSContext *ctx, JSValueConst this_val, int argc, Arg *argv) {
    (void)this_val;
    REQUIRE_READY();
    if (step_open) return JS_ThrowInternalError(ctx, "dwf: a step is already running");
    const char *name = str_arg(ctx, argc, argv, 0);
    if (!name) return JS_EXCEPTION;
    const char *backoff = argc > 3 && JS_IsString(argv[3]) ? JS_ToCString(ctx, argv[3]) : NULL;
    dwf_step_config config = {
        .limit = int_arg(ctx, argc, argv, 1, DWF_DEFAULT),
        .delay_ms = int_arg(ctx, argc, argv, 2, DWF_DEFAULT),
        .backoff = backoff,
        .timeout_ms = int_arg(ctx, argc, argv, 4, DWF_DEFAULT),
    };
    dwf_result recorded;
    bool run = dwf__step_begin(name, &config, &current, &recorded);
    JS_FreeCString(ctx, backoff);
    if (!run) {
        JS_FreeCString(ctx, name);
        return outcome(ctx, recorded);
    }
    current_name = name; /* a batched step's name stays the running step until stepEnd */
    current_ctx = ctx;
    step_open = true;
    return JS_NewInt64(ctx, current.step.attempt);
}

/* The body's failure into the step: {name, message, retryable}. */
static bool record_error(JSContext *ctx, JSValueConst error) {
    JSValue n = JS_GetPropertyStr(ctx, error, "name"), m = JS_GetPropertyStr(ctx, error, "message"),
            r = JS_GetPropertyStr(ctx, error, "retryable");
    const char *name = JS_ToCString(ctx, n), *message = JS_ToCString(ctx, m);
    bool retryable = JS_IsUndefined(r) || JS_ToBool(ctx, r);
    if (name && message) {
        if (retryable) dwf_step_error(&current.step, name, message);
        else dwf_step_fatal(&current.step, name, message);
    }
    JS_FreeCString(ctx, name);
    JS_FreeCString(ctx, message);
    JS_FreeValue(ctx, n);
    JS_FreeValue(ctx, m);
    JS_FreeValue(ctx, r);
    return name && message;
}

/*
 * stepEnd(ok, resultOrError): reports the attempt. Success: {ok: true, value} with the
 * value as journaled. Failure: returns the final error once retries are spent; a retry
 * due later suspends the invocation. A result that cannot be serialized fails the
 * attempt with its TypeError.
 */
static JSValue js_step_end(JSContext *ctx, JSValueConst this_val, int argc, Arg *argv) {
    (void)this_val;
    if (!step_open) return JS_ThrowInternalError(ctx, "dwf: no step is running");
    bool ok = argc > 0 && JS_ToBool(ctx, argv[0]);
    if (ok && !encode_arg(ctx, argc, argv, 1, &current.step.result)) {
        /* A result that cannot be journaled fails the step for good: a retry returns the
         * same kind of value. */
        ok = false;
        dwf_writer_reset(&current.step.result);
        JSValue failure = JS_GetException(ctx);
        JSValue message = JS_GetPropertyStr(ctx, failure, "message");
        const char *text = JS_ToCString(ctx, message);
        dwf_step_fatal(&current.step, "TypeError",
                       dwf_cat("the step's result cannot be journaled: ", text ? text : "",
                               NULL));
        JS_FreeCString(ctx, text);
        JS_FreeValue(ctx, message);
        JS_FreeValue(ctx, failure);
    } else if (!ok && !record_error(ctx, argc > 1 ? argv[1] : JS_UNDEFINED)) {
        dwf_step_error(&current.step, "Error", "the step failed with an unreadable error");
    }
    step_open = false;
    dwf_result r = dwf__step_end(&current, ok);
    JS_FreeCString(ctx, current_name);
    current_name = NULL;
    return outcome(ctx, r);
}

void dwfjs_abandon_step(const char *name, const char *message) {
    if (!step_open) return;
    step_open = false;
    dwf_step_fatal(&current.step, name, message);
    dwf__step_end(&current, false);
    JS_FreeCString(current_ctx, current_name);
    current_name = NULL;
}

/* sleep(name, ms) / sleepUntil(name, timestampMs): suspend unless already due. */
static JSValue js_sleep(JSContext *ctx, JSValueConst this_val, int argc, Arg *argv, int until) {
    (void)this_val;
    REQUIRE_READY();
    call_args a;
    TAKE_ARGS("s", a);
    int64_t ms = int_arg(ctx, argc, argv, 1, 0);
    if (until) dwf_sleep_until(a.s[0], ms);
    else dwf_sleep(a.s[0], ms);
    args_release(ctx, &a);
    return JS_UNDEFINED;
}

/*
 * The durable calls that answer an outcome, and the fetch binding (fetch handlers only),
 * as one native per call (the magic number), each {ok, value} or {ok: false, name, message}:
 *   waitForEvent(name, type, timeoutMs)          value {type, payload, timestamp}
 *   createInstance(name, workflow, params, id?)  value {id}
 *   sendEvent(name, instanceId, type, payload)   value {}
 *   fetchCreate(workflow, params, id?)           value {id}
 *   fetchStatus(id)                              value: the instance's status map
 *   fetchSendEvent(instanceId, type, payload)    value {}
 *   httpFetch(request)                           value: the response map (proposal 0003;
 *                                                in a step body or a fetch handler only)
 */
enum {
    WAIT_FOR_EVENT, CREATE_INSTANCE, SEND_EVENT, FETCH_CREATE, FETCH_STATUS, FETCH_SEND_EVENT,
    HTTP_FETCH
};
static const char *const call_specs[] = {"ss", "sspo", "sssp", "spo", "s", "ssp", "p"};

/* One outbound request: the request map as the SDK built it. */
static dwf_result http_fetch(dwf_bytes request) {
    dwf_out_slot slot = {0, 0};
    int32_t code = dwf_host_http_fetch(request.ptr, request.len, &slot);
    return dwf__outcome("http_fetch", "fetch()", code, &slot);
}

static JSValue js_call(JSContext *ctx, JSValueConst this_val, int argc, Arg *argv, int call) {
    (void)this_val;
    REQUIRE_READY();
    call_args a;
    TAKE_ARGS(call_specs[call], a);
    const char **s = a.s;
    dwf_result r;
    switch (call) {
    case WAIT_FOR_EVENT:
        r = dwf_wait_for_event(s[0], s[1], int_arg(ctx, argc, argv, 2, -1), NULL);
        break;
    case CREATE_INSTANCE:
        r = dwf_create_instance(s[0], s[1], payload_of(&a), s[2], NULL);
        break;
    case SEND_EVENT:
        r = dwf_send_event(s[0], s[1], s[2], payload_of(&a));
        break;
    case FETCH_CREATE:
        r = dwf_fetch_create_instance(s[0], payload_of(&a), s[1], NULL);
        break;
    case FETCH_STATUS:
        r = dwf_fetch_instance_status(s[0]);
        break;
    case HTTP_FETCH:
        r = http_fetch(payload_of(&a));
        break;
    default:
        r = dwf_fetch_send_event(s[0], s[1], payload_of(&a));
        break;
    }
    JSValue result = outcome(ctx, r);
    args_release(ctx, &a);
    return result;
}

/* now(name): journaled ms since the epoch. */
static JSValue js_now(JSContext *ctx, JSValueConst this_val, int argc, Arg *argv) {
    (void)this_val;
    REQUIRE_READY();
    call_args a;
    TAKE_ARGS("s", a);
    int64_t now = dwf_now(a.s[0]);
    args_release(ctx, &a);
    if (now > dwfjs_clock_ms) dwfjs_clock_ms = now;
    return JS_NewInt64(ctx, now);
}

/* random(name, n): n (<= 4096) journaled random bytes as a Uint8Array. */
static JSValue js_random(JSContext *ctx, JSValueConst this_val, int argc, Arg *argv) {
    (void)this_val;
    REQUIRE_READY();
    int64_t n = int_arg(ctx, argc, argv, 1, 0);
    if (n < 1 || n > DWF_RANDOM_MAX)
        return JS_ThrowRangeError(ctx, "random: between 1 and %d bytes", DWF_RANDOM_MAX);
    call_args a;
    TAKE_ARGS("s", a);
    uint8_t buf[DWF_RANDOM_MAX];
    dwf_random(a.s[0], buf, (uint32_t)n);
    args_release(ctx, &a);
    return JS_NewUint8ArrayCopy(ctx, buf, (size_t)n);
}

/* clock(): the latest time the guest knows (not journaled; see dwfjs_clock_ms). */
static JSValue js_clock(JSContext *ctx, JSValueConst this_val, int argc, Arg *argv) {
    (void)this_val, (void)argc, (void)argv;
    return JS_NewInt64(ctx, dwfjs_clock_ms);
}

/* ---- UTF-8 (TextEncoder / TextDecoder) ------------------------------------ */

static JSValue js_utf8_encode(JSContext *ctx, JSValueConst this_val, int argc, Arg *argv) {
    (void)this_val;
    size_t len;
    const char *s = JS_ToCStringLen(ctx, &len, argc ? argv[0] : JS_UNDEFINED);
    if (!s) return JS_EXCEPTION;
    JSValue bytes = JS_NewUint8ArrayCopy(ctx, (const uint8_t *)s, len);
    JS_FreeCString(ctx, s);
    return bytes;
}

static JSValue js_utf8_decode(JSContext *ctx, JSValueConst this_val, int argc, Arg *argv) {
    (void)this_val;
    size_t size;
    uint8_t *bytes = argc ? JS_GetUint8Array(ctx, &size, argv[0]) : NULL;
    if (!bytes) return argc && JS_HasException(ctx) ? JS_EXCEPTION : JS_NewString(ctx, "");
    return JS_NewStringLen(ctx, (const char *)bytes, size);
}

static const JSCFunctionListEntry natives[] = {
    JS_CFUNC_DEF("log", 2, js_log),
    JS_CFUNC_DEF("setOutput", 1, js_set_output),
    JS_CFUNC_DEF("setError", 2, js_set_error),
    JS_CFUNC_DEF("stepBegin", 5, js_step_begin),
    JS_CFUNC_DEF("stepEnd", 2, js_step_end),
    JS_CFUNC_MAGIC_DEF("sleep", 2, js_sleep, 0),
    JS_CFUNC_MAGIC_DEF("sleepUntil", 2, js_sleep, 1),
    JS_CFUNC_MAGIC_DEF("waitForEvent", 3, js_call, WAIT_FOR_EVENT),
    JS_CFUNC_MAGIC_DEF("createInstance", 4, js_call, CREATE_INSTANCE),
    JS_CFUNC_MAGIC_DEF("sendEvent", 4, js_call, SEND_EVENT),
    JS_CFUNC_DEF("now", 1, js_now),
    JS_CFUNC_DEF("random", 2, js_random),
    JS_CFUNC_DEF("clock", 0, js_clock),
    JS_CFUNC_MAGIC_DEF("fetchCreate", 3, js_call, FETCH_CREATE),
    JS_CFUNC_MAGIC_DEF("fetchStatus", 1, js_call, FETCH_STATUS),
    JS_CFUNC_MAGIC_DEF("fetchSendEvent", 3, js_call, FETCH_SEND_EVENT),
    JS_CFUNC_MAGIC_DEF("httpFetch", 1, js_call, HTTP_FETCH),
    JS_CFUNC_DEF("utf8Encode", 1, js_utf8_encode),
    JS_CFUNC_DEF("utf8Decode", 1, js_utf8_decode),
};

void dwfjs_install_natives(JSContext *ctx) {
    JSValue global = JS_GetGlobalObject(ctx);
    JSValue object = JS_NewObject(ctx);
    JS_SetPropertyFunctionList(ctx, object, natives, sizeof natives / sizeof natives[0]);
    JS_SetPropertyStr(ctx, global, "__dwf", object);
    JS_FreeValue(ctx, global);
}
