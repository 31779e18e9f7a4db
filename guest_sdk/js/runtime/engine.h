/*
 * engine.h - the JavaScript guest runtime: QuickJS-ng compiled to a core wasm
 * module that speaks ABI v1 (guest_sdk/ABI.md). Shared by its .c files.
 *
 *   engine.c   the exports (dwf_describe, dwf_run, dwf_fetch, wizer.initialize):
 *              one JS context, made once (at build time, by Wizer) and reused
 *   natives.c  the functions the SDK (guest_sdk/js/sdk) calls: durable calls,
 *              logs, output, the fetch binding, UTF-8
 *   values.c   JS values <-> msgpack, with the C SDK's codec
 *   libc.c     dwf_alloc/dwf_free on malloc, and the few WASI functions
 *              wasi-libc calls, defined here so the module imports only dwf.*
 *
 * The durable calls themselves (journal positions, step batches, replay from
 * the event) are the C SDK's (guest_sdk/c/dwf_durable.c): one implementation.
 */
#ifndef DWF_JS_ENGINE_H
#define DWF_JS_ENGINE_H

#include "dwf_internal.h"
#include "quickjs.h"

#define DWF_JS_SDK_NAME "js/0.1"

/* The tenant's bundle (esbuild's output, NUL-terminated), generated per tenant. */
extern const char dwf_js_bundle[];
extern const uint32_t dwf_js_bundle_len;

/* True once the bundle was evaluated and an export may call the host. While Wizer
 * snapshots the module (at build time) no host import may be called: they trap. */
extern bool dwfjs_ready;

/* The last time the guest learned (ms since the epoch): the event's timestamp, then
 * every journaled `now`. The only clock the guest has outside the journal. */
extern int64_t dwfjs_clock_ms;

/* values.c: msgpack <-> JS. Encoding returns false with a JS exception pending when a
 * value cannot be serialized; decoding returns JS_EXCEPTION on malformed input. */
bool dwfjs_encode(JSContext *ctx, JSValueConst value, dwf_writer *w);
JSValue dwfjs_decode(JSContext *ctx, dwf_reader *r);
JSValue dwfjs_decode_bytes(JSContext *ctx, dwf_bytes bytes);

/* natives.c: defines the `__dwf` object of native functions on the global object. */
void dwfjs_install_natives(JSContext *ctx);

/* natives.c: fails the step whose body is running, if one is, for good (the invocation
 * cannot go on: its body waits on something that never comes). */
void dwfjs_abandon_step(const char *name, const char *message);

/* engine.c: answers one HTTP request (proposal 0001); fetch_export.c exports it. */
int32_t dwfjs_fetch(const uint8_t *request, uint32_t len);

#endif /* DWF_JS_ENGINE_H */
