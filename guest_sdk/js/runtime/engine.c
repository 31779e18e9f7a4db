/*
 * engine.c - the ABI exports of a JavaScript tenant module.
 *
 * One QuickJS runtime and context per module instance, made by init(): it
 * evaluates the tenant's bundle (the SDK included), which leaves its entry
 * points in the global `__dwf_hooks` {describe, run, fetch}. `make` runs init
 * at build time under Wizer and snapshots the result, so an invocation starts
 * with the bundle loaded; a module that was not snapshotted runs init on its
 * first call instead.
 *
 * Every workflow call the SDK makes is synchronous (a host import), so an
 * invocation is: call the hook, run the job queue until it is empty, read how
 * the hook's promise settled. A promise still pending then waits for something
 * that can never happen in the sandbox (a timer, I/O) and fails the invocation.
 */
#include <stdlib.h>

#include "engine.h"

bool dwfjs_ready;
int64_t dwfjs_clock_ms;

static JSRuntime *rt;
static JSContext *ctx;
static JSValue hooks;      /* __dwf_hooks, or an exception value if loading failed */
static char *load_failure; /* why loading the bundle failed, for every export */

/* JS stack for QuickJS's own overflow check: below the module's shadow stack (1 MiB). */
#define JS_STACK_BYTES (768 * 1024)

/* QuickJS allocates through these: a failed allocation traps with a log line instead
 * of unwinding through the engine (the host reports MemoryLimitExceeded near the cap). */
static void *oom(size_t size) {
    (void)size;
    dwf__oom();
}
static void *alloc_calloc(void *opaque, size_t count, size_t size) {
    (void)opaque;
    void *p = calloc(count, size);
    return p || !count || !size ? p : oom(count * size);
}
static void *alloc_malloc(void *opaque, size_t size) {
    (void)opaque;
    void *p = malloc(size);
    return p || !size ? p : oom(size);
}
static void alloc_free(void *opaque, void *ptr) {
    (void)opaque;
    free(ptr);
}
static void *alloc_realloc(void *opaque, void *ptr, size_t size) {
    (void)opaque;
    void *p = realloc(ptr, size);
    return p || !size ? p : oom(size);
}
static const JSMallocFunctions allocator = {alloc_calloc, alloc_malloc, alloc_free, alloc_realloc, NULL};

/* "Name: message\nstack" of a thrown value, as a new C string. */
static char *describe_exception(JSValueConst exception) {
    JSValue stack = JS_IsObject(exception) ? JS_GetPropertyStr(ctx, exception, "stack")
                                           : JS_UNDEFINED;
    const char *head = JS_ToCString(ctx, exception);
    const char *trace = JS_IsString(stack) ? JS_ToCString(ctx, stack) : NULL;
    char *text = dwf_cat(head ? head : "an exception that cannot be printed", trace ? "\n" : "",
                         trace ? trace : "", NULL);
    JS_FreeCString(ctx, head);
    JS_FreeCString(ctx, trace);
    JS_FreeValue(ctx, stack);
    return text;
}

static void init(void) {
    if (rt) return;
    rt = JS_NewRuntime2(&allocator, NULL);
    JS_SetMaxStackSize(rt, JS_STACK_BYTES);
    ctx = JS_NewContext(rt);
    dwfjs_install_natives(ctx);
    JSValue loaded = JS_Eval(ctx, dwf_js_bundle, dwf_js_bundle_len, "bundle.js",
                             JS_EVAL_TYPE_GLOBAL);
    if (JS_IsException(loaded)) {
        JSValue exception = JS_GetException(ctx);
        load_failure = describe_exception(exception);
        JS_FreeValue(ctx, exception);
        return;
    }
    JS_FreeValue(ctx, loaded);
    JSValue global = JS_GetGlobalObject(ctx);
    hooks = JS_GetPropertyStr(ctx, global, "__dwf_hooks");
    JS_FreeValue(ctx, global);
    if (!JS_IsObject(hooks))
        load_failure = dwf_cat("the bundle did not install the SDK's entry points (was it "
                               "built with `dwf build`?)", NULL);
}

/* Wizer calls this at build time; its state becomes the module's initial state. */
__attribute__((export_name("wizer.initialize"))) void dwfjs_wizer_initialize(void) { init(); }

/* Every export starts here: the engine loaded, the host reachable. */
static bool enter(void) {
    init();
    JS_UpdateStackTop(rt);
    dwfjs_ready = true;
    if (!load_failure) return true;
    dwf_fail("ModuleLoadError", dwf_cat("the tenant's code threw while loading: ", load_failure,
                                        NULL));
    return false;
}

/* The job queue ran dry with the hook's promise pending: say why, the SDK's words first. */
static void fail_stalled(void) {
    JSValue fn = JS_GetPropertyStr(ctx, hooks, "stalled");
    JSValue reason = JS_Call(ctx, fn, hooks, 0, NULL);
    const char *text = JS_IsString(reason) ? JS_ToCString(ctx, reason) : NULL;
    const char *message =
        text ? text
             : "the code waits on a promise nothing can settle: the sandbox has no timers or "
               "I/O; use step.sleep() to wait and step.do() for side effects";
    dwfjs_abandon_step("PendingForever", message);
    dwf_fail("PendingForever", message);
    JS_FreeCString(ctx, text);
    JS_FreeValue(ctx, reason);
    JS_FreeValue(ctx, fn);
    if (JS_HasException(ctx)) JS_FreeValue(ctx, JS_GetException(ctx));
}

/* Calls hooks[name](args...) and runs the job queue dry; the hook's settled promise. */
static int32_t call_hook(const char *name, int argc, JSValueConst *argv) {
    JSValue fn = JS_GetPropertyStr(ctx, hooks, name);
    JSValue promise = JS_Call(ctx, fn, hooks, argc, argv);
    JS_FreeValue(ctx, fn);
    for (;;) {
        JSContext *job_ctx;
        int ran = JS_ExecutePendingJob(rt, &job_ctx);
        if (ran <= 0) break; /* the SDK's hooks catch what tenant code throws */
    }
    int32_t rc = DWF_RUN_FAILED;
    if (JS_IsException(promise)) {
        JSValue exception = JS_GetException(ctx);
        dwf_fail("InternalError", describe_exception(exception));
        JS_FreeValue(ctx, exception);
    } else if (JS_PromiseState(ctx, promise) == JS_PROMISE_FULFILLED) {
        JSValue result = JS_PromiseResult(ctx, promise);
        int32_t code;
        rc = JS_ToInt32(ctx, &code, result) ? DWF_RUN_FAILED : code;
        JS_FreeValue(ctx, result);
    } else if (JS_PromiseState(ctx, promise) == JS_PROMISE_REJECTED) {
        JSValue reason = JS_PromiseResult(ctx, promise);
        dwf_fail("InternalError", describe_exception(reason));
        JS_FreeValue(ctx, reason);
    } else {
        fail_stalled();
    }
    JS_FreeValue(ctx, promise);
    return rc;
}

__attribute__((export_name("dwf_abi_version"))) int32_t dwf_abi_version(void) {
    return DWF_ABI_VERSION;
}

/* The manifest: {abi, sdk, workflows}; the SDK names the workflows. */
__attribute__((export_name("dwf_describe"))) int32_t dwf_describe(void) {
    if (!enter()) return DWF_RUN_FAILED;
    JSValue fn = JS_GetPropertyStr(ctx, hooks, "describe");
    JSValue names = JS_Call(ctx, fn, hooks, 0, NULL);
    JS_FreeValue(ctx, fn);
    int64_t count;
    if (JS_IsException(names) || JS_GetLength(ctx, names, &count)) {
        JSValue exception = JS_GetException(ctx);
        dwf_fail("ModuleLoadError", describe_exception(exception));
        JS_FreeValue(ctx, exception);
        JS_FreeValue(ctx, names);
        return DWF_RUN_FAILED;
    }
    dwf_writer w = {0};
    dwf__write_manifest_head(&w, DWF_JS_SDK_NAME, (uint32_t)count);
    for (int64_t i = 0; i < count; i++) {
        JSValue name = JS_GetPropertyUint32(ctx, names, (uint32_t)i);
        size_t len;
        const char *s = JS_ToCStringLen(ctx, &len, name);
        dwf_write_strn(&w, s ? s : "", (uint32_t)len);
        JS_FreeCString(ctx, s);
        JS_FreeValue(ctx, name);
    }
    JS_FreeValue(ctx, names);
    dwf_host_set_output(w.data, w.len);
    dwf_writer_release(&w);
    return 0;
}

/* dwf_run: the event map's fields as the hook's arguments (workflow, payload,
 * instanceId, timestamp); the SDK sets the output or the error. */
__attribute__((export_name("dwf_run"))) int32_t dwf_run(const uint8_t *event, uint32_t len) {
    if (!enter()) return DWF_RUN_FAILED;
    dwf_reader r = dwf_reader_new((dwf_bytes){event, len});
    dwf_reader payload;
    const char *instance_id = dwf_get_str(&r, "instance_id", NULL);
    const char *workflow = dwf_get_str(&r, "workflow", NULL);
    if (dwf_peek(&r) != DWF_T_MAP || !instance_id || !workflow)
        return dwf_fail("InvalidEvent", "dwf_run needs a msgpack map with string `instance_id` "
                                        "and `workflow` (see guest_sdk/ABI.md)");
    if (!dwf_find(&r, "payload", &payload)) payload = dwf__nil_reader();
    dwfjs_clock_ms = dwf_get_int(&r, "timestamp", 0);
    dwf__journal_begin(&r);
    JSValue args[4] = {
        JS_NewString(ctx, workflow),
        dwfjs_decode(ctx, &payload),
        JS_NewString(ctx, instance_id),
        JS_NewInt64(ctx, dwfjs_clock_ms),
    };
    int32_t rc = JS_IsException(args[1])
                     ? dwf_fail("InvalidEvent", "the workflow's params are not valid msgpack")
                     : call_hook("run", 4, args);
    for (int i = 0; i < 4; i++) JS_FreeValue(ctx, args[i]);
    return rc == DWF_RUN_COMPLETE && !dwf__workflow_failed() ? DWF_RUN_COMPLETE : DWF_RUN_FAILED;
}

int32_t dwfjs_fetch(const uint8_t *request, uint32_t len) {
    if (!enter()) return DWF_RUN_FAILED;
    dwf_reader r = dwf_reader_new((dwf_bytes){request, len});
    dwfjs_clock_ms = dwf_get_int(&r, "timestamp", 0); /* when the host received it */
    JSValue req = dwfjs_decode_bytes(ctx, (dwf_bytes){request, len});
    if (JS_IsException(req) || !JS_IsObject(req)) {
        JS_FreeValue(ctx, req);
        return dwf_fail("InvalidRequest", "dwf_fetch needs a msgpack request map (see "
                                          "guest_sdk/ABI.md)");
    }
    int32_t rc = call_hook("fetch", 1, &req);
    JS_FreeValue(ctx, req);
    return rc == DWF_RUN_COMPLETE && !dwf__workflow_failed() ? DWF_RUN_COMPLETE : DWF_RUN_FAILED;
}
