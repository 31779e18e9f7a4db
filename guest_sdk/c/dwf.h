/*
 * dwf.h - C guest SDK for dynamic-workflows (ABI version 1).
 *
 * A tenant module is one or more .c files compiled together with dwf.c for
 * wasm32-freestanding (no libc). It declares its workflows once:
 *
 *     static int onboarding(const dwf_input *in) { ... return dwf_output(...); }
 *     DWF_WORKFLOWS(
 *         DWF_WORKFLOW("onboarding", onboarding),
 *     )
 *
 * and the SDK provides the ABI exports (dwf_abi_version, dwf_alloc, dwf_free,
 * dwf_describe, dwf_run) and dispatches each invocation by workflow name.
 * A module may also answer HTTP requests: DWF_FETCH(handler), see below.
 *
 * Durability rules (see guest_sdk/ABI.md, "Suspension"): the host may stop an
 * invocation inside dwf_step / dwf_sleep / dwf_wait_for_event... and later run
 * the workflow again from the start, answering finished calls from its journal.
 * So a workflow function must be deterministic between those calls and keep
 * every side effect inside step bodies. A call that suspends never returns.
 *
 * Memory: a fresh wasm instance serves each invocation, so everything the SDK
 * hands you (results, strings, readers) stays valid until the invocation ends;
 * nothing needs freeing. Memory exhaustion inside the SDK traps (inside a step
 * body that counts as a failed, retryable attempt).
 */
#ifndef DWF_H
#define DWF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DWF_SDK_NAME "c/0.1"

/* ------------------------------------------------------------------------ */
/* Byte slices and strings                                                  */
/* ------------------------------------------------------------------------ */

/* A borrowed (ptr, len) byte range, e.g. one encoded msgpack value. */
typedef struct {
    const uint8_t *ptr;
    uint32_t len;
} dwf_bytes;

/* Strings in this API are NUL-terminated UTF-8. */
bool dwf_streq(const char *a, const char *b);
uint32_t dwf_strlen(const char *s);

/* Concatenates NUL-terminated strings up to a NULL sentinel into a new string. */
char *dwf_cat(const char *first, ...) __attribute__((sentinel));

/* Writes the decimal form of v into buf and returns buf. */
#define DWF_ITOA_SIZE 21
char *dwf_itoa(int64_t v, char buf[DWF_ITOA_SIZE]);

/* ------------------------------------------------------------------------ */
/* msgpack writer: a growable buffer                                        */
/* ------------------------------------------------------------------------ */

/* Zero-initialise (`dwf_writer w = {0};`) before use. */
typedef struct {
    uint8_t *data;
    uint32_t len;
    uint32_t cap;
} dwf_writer;

void dwf_write_nil(dwf_writer *w);
void dwf_write_bool(dwf_writer *w, bool v);
void dwf_write_int(dwf_writer *w, int64_t v);
void dwf_write_uint(dwf_writer *w, uint64_t v);
void dwf_write_double(dwf_writer *w, double v);
void dwf_write_str(dwf_writer *w, const char *s); /* NUL-terminated */
void dwf_write_strn(dwf_writer *w, const char *s, uint32_t len);
void dwf_write_bin(dwf_writer *w, const void *p, uint32_t len);
void dwf_write_array(dwf_writer *w, uint32_t count); /* then `count` values */
void dwf_write_map(dwf_writer *w, uint32_t count);   /* then `count` key/value pairs */
/* Appends already-encoded msgpack (e.g. a value taken from a reader). */
void dwf_write_raw(dwf_writer *w, dwf_bytes encoded);

dwf_bytes dwf_writer_bytes(const dwf_writer *w);
void dwf_writer_reset(dwf_writer *w);   /* len = 0, keeps the buffer */
void dwf_writer_release(dwf_writer *w); /* frees the buffer */

/* ------------------------------------------------------------------------ */
/* msgpack reader: a bounds-checked cursor                                  */
/* ------------------------------------------------------------------------ */

typedef enum {
    DWF_T_INVALID = 0, /* end of input, or malformed */
    DWF_T_NIL,
    DWF_T_BOOL,
    DWF_T_INT, /* any msgpack integer, signed or unsigned */
    DWF_T_FLOAT,
    DWF_T_STR,
    DWF_T_BIN,
    DWF_T_ARRAY,
    DWF_T_MAP,
    DWF_T_EXT,
} dwf_type;

/*
 * A cursor over `len` bytes. Every read checks bounds and the type; on
 * failure it returns false and leaves the cursor where it was, so malformed
 * input is an error, never an out-of-bounds read.
 */
typedef struct {
    const uint8_t *buf;
    uint32_t len;
    uint32_t pos;
} dwf_reader;

dwf_reader dwf_reader_new(dwf_bytes b);
dwf_type dwf_peek(const dwf_reader *r);
bool dwf_at_end(const dwf_reader *r);

bool dwf_read_nil(dwf_reader *r);
bool dwf_read_bool(dwf_reader *r, bool *out);
bool dwf_read_int(dwf_reader *r, int64_t *out);   /* fails above INT64_MAX */
bool dwf_read_uint(dwf_reader *r, uint64_t *out); /* fails below 0 */
bool dwf_read_double(dwf_reader *r, double *out); /* floats, and integers converted */
/* Strings and bins are borrowed from the buffer and NOT NUL-terminated. */
bool dwf_read_str(dwf_reader *r, const char **out, uint32_t *len);
bool dwf_read_bin(dwf_reader *r, const uint8_t **out, uint32_t *len);
bool dwf_read_array(dwf_reader *r, uint32_t *count);
bool dwf_read_map(dwf_reader *r, uint32_t *count);
bool dwf_skip(dwf_reader *r); /* skips one complete value, however nested */

/* The encoded bytes of the next value (len 0 if malformed). Does not advance. */
dwf_bytes dwf_value_bytes(const dwf_reader *r);

/*
 * With `map` positioned at a map: finds the first entry whose key is the
 * string `key` and sets `*value` to a reader over exactly that value.
 * Does not advance `map`. False if `map` is not a map, the key is missing,
 * or the map is malformed.
 */
bool dwf_find(const dwf_reader *map, const char *key, dwf_reader *value);

/* Typed lookups in a map with a default for missing / ill-typed entries. */
int64_t dwf_get_int(const dwf_reader *map, const char *key, int64_t def);
bool dwf_get_bool(const dwf_reader *map, const char *key, bool def);
/* Returns a NUL-terminated copy (valid for the invocation), or def. */
const char *dwf_get_str(const dwf_reader *map, const char *key, const char *def);

/* ------------------------------------------------------------------------ */
/* Workflows                                                                */
/* ------------------------------------------------------------------------ */

/* What one invocation was started with (the dwf_run event). */
typedef struct {
    dwf_reader payload;      /* the workflow's params, one msgpack value */
    int64_t timestamp;       /* ms since the epoch: the instance's creation time, the same
                                on every replay (ABI.md); the time now is dwf_now */
    const char *instance_id; /* this instance */
    const char *workflow;    /* the workflow name being run */
} dwf_input;

/* Returns DWF_COMPLETE or DWF_FAILED; use `return dwf_output(...)` / `return dwf_fail(...)`. */
typedef int (*dwf_workflow_fn)(const dwf_input *in);

typedef struct {
    const char *name; /* 1-64 chars of [A-Za-z0-9_-] */
    dwf_workflow_fn run;
} dwf_workflow;

#define DWF_COMPLETE 0
#define DWF_FAILED 1

/*
 * Registers the module's workflows; use exactly once per module, at file scope:
 *     DWF_WORKFLOWS(DWF_WORKFLOW("a", run_a), DWF_WORKFLOW("b", run_b))
 */
#define DWF_WORKFLOW(name, fn) {(name), (fn)}
#define DWF_WORKFLOWS(...)                                                                 \
    const dwf_workflow dwf_workflows[] = {__VA_ARGS__};                                    \
    const uint32_t dwf_workflow_count = sizeof(dwf_workflows) / sizeof(dwf_workflows[0]);

extern const dwf_workflow dwf_workflows[];
extern const uint32_t dwf_workflow_count;

/* Sets the workflow's output (one msgpack value; empty bytes mean nil). Returns DWF_COMPLETE. */
int dwf_output(dwf_bytes value);
/* Fails the workflow with the error map {name, message}. Returns DWF_FAILED. */
int dwf_fail(const char *name, const char *message);

typedef enum {
    DWF_LOG_DEBUG = 0,
    DWF_LOG_INFO = 1,
    DWF_LOG_WARNING = 2,
    DWF_LOG_ERROR = 3,
} dwf_log_level;

/* Not journaled: a replay logs again. */
void dwf_log(dwf_log_level level, const char *message);

/* ------------------------------------------------------------------------ */
/* Durable calls                                                            */
/* ------------------------------------------------------------------------ */

/* An error map from the host, or one the workflow builds. */
typedef struct {
    const char *name;    /* e.g. "WaitForEventTimeout", or a step body's error name */
    const char *message;
    bool retryable;      /* dwf_http_fetch: whether trying again can help (see below) */
} dwf_error;

/* The outcome of a durable call. */
typedef struct {
    bool ok;
    dwf_reader value; /* ok: the result value */
    dwf_error error;  /* !ok: why */
} dwf_result;

/* Use with any field of dwf_step_config to keep the host default (so does 0, below). */
#define DWF_DEFAULT (-1)
/* An actual zero for a dwf_step_config field: no retries (limit), retry at once (delay_ms). */
#define DWF_NONE (-2)

#define DWF_BACKOFF_CONSTANT "constant"
#define DWF_BACKOFF_LINEAR "linear"
#define DWF_BACKOFF_EXPONENTIAL "exponential"

/*
 * A step's retries and timeout. A field left 0 (or NULL, or DWF_DEFAULT) keeps the host
 * default, so `{.limit = 2, .delay_ms = 100}` changes those two and nothing else; DWF_NONE
 * asks for an actual zero (`.limit = DWF_NONE`: no retries).
 */
typedef struct {
    int64_t limit;       /* retries after the first attempt (host default 5) */
    int64_t delay_ms;    /* base delay before a retry (host default 10000) */
    const char *backoff; /* a DWF_BACKOFF_* string, NULL = host default (exponential) */
    int64_t timeout_ms;  /* per attempt (host default 600000); never 0 */
} dwf_step_config;

#define DWF_STEP_DEFAULTS                                                                  \
    {.limit = DWF_DEFAULT, .delay_ms = DWF_DEFAULT, .backoff = NULL, .timeout_ms = DWF_DEFAULT}

/* Handed to a step body for one attempt. */
typedef struct {
    const char *name;
    int64_t attempt;   /* 1 for the first attempt */
    dwf_writer result; /* write the result here: one msgpack value (nil if left empty) */
    dwf_writer error_; /* private: the failure set by dwf_step_error / dwf_step_fatal */
} dwf_step;

/*
 * A step body: does the side effect, writes its result and returns true, or
 * returns dwf_step_error(...) (retryable) / dwf_step_fatal(...) (not).
 */
typedef bool (*dwf_step_fn)(dwf_step *step, void *ctx);

/* Record a failed attempt; both return false so a body can `return dwf_step_error(...)`. */
bool dwf_step_error(dwf_step *step, const char *name, const char *message);
bool dwf_step_fatal(dwf_step *step, const char *name, const char *message);

/*
 * Runs step `name` (1-256 bytes), or returns its journaled outcome on replay.
 * `config` may be NULL for host defaults. On final failure (after retries)
 * the result holds the body's error. Steps cannot nest: no durable call may be
 * made from inside a step body.
 */
dwf_result dwf_step_do(const char *name, const dwf_step_config *config, dwf_step_fn body,
                       void *ctx);

/* Durable sleeps: suspend the invocation until the time has come. */
void dwf_sleep(const char *name, int64_t duration_ms);
void dwf_sleep_until(const char *name, int64_t timestamp_ms);

/* An event received by dwf_wait_for_event. */
typedef struct {
    const char *type;
    dwf_reader payload;
    int64_t timestamp;
} dwf_event;

#define DWF_WAIT_DEFAULT_TIMEOUT_MS (24LL * 60 * 60 * 1000)

/*
 * Waits for the next event of `type` sent to this instance (FIFO per type).
 * timeout_ms may be DWF_DEFAULT (24 h). On success fills *event (if not NULL)
 * and the result value is the event map; on timeout the error name is
 * "WaitForEventTimeout".
 */
dwf_result dwf_wait_for_event(const char *name, const char *type, int64_t timeout_ms,
                              dwf_event *event);

/*
 * Starts an instance of this tenant's `workflow` with `params` (empty bytes =
 * nil). `id` NULL lets the host choose. On success *id_out (if not NULL) is
 * the new instance id; the result value is {"id": str}.
 */
dwf_result dwf_create_instance(const char *name, const char *workflow, dwf_bytes params,
                               const char *id, const char **id_out);

/* Sends an event of `type` to one of this tenant's instances. */
dwf_result dwf_send_event(const char *name, const char *instance_id, const char *type,
                          dwf_bytes payload);

/*
 * The guest's only clock and entropy. Both are journaled like steps: a replay
 * returns the recorded value, so code may branch on them safely.
 */
int64_t dwf_now(const char *name); /* ms since the epoch */
#define DWF_RANDOM_MAX 4096
void dwf_random(const char *name, void *buf, uint32_t len); /* len <= DWF_RANDOM_MAX */

/* ------------------------------------------------------------------------ */
/* Fetch handlers: answering HTTP requests (proposal 0001)                  */
/* ------------------------------------------------------------------------ */

/*
 * A module may also answer HTTP requests sent to its tenant (`x-tenant-id`):
 *
 *     static int fetch(const dwf_request *req, dwf_response *res) {
 *         return dwf_respond_text(res, 200, "hello");
 *     }
 *     DWF_FETCH(fetch)
 *
 * A handler runs in a fresh sandbox per request with the tenant's limits and
 * is not durable: no steps, sleeps or waits (those are AbiViolation). It may
 * create, inspect and signal its own tenant's instances with dwf_fetch_*.
 * Return the value of a dwf_respond* call, or dwf_fail(...) for a 500.
 */
typedef struct {
    const char *method;     /* "GET", "POST", ... */
    const char *path;       /* "/status/abc", as sent (not percent-decoded) */
    const char *query;      /* "a=1&b=2" without the '?', "" if none */
    const char *request_id; /* the host's id for this request, also in its logs */
    dwf_reader headers;     /* msgpack map: lower-case name -> str */
    dwf_bytes body;         /* the raw body */
    bool has_json;          /* the body is declared (content-type) and parsed as JSON */
    dwf_reader json;        /* if has_json: the body as one msgpack value */
} dwf_request;

/* Zero-initialised by the SDK; build it with dwf_response_header and a dwf_respond*. */
typedef struct {
    dwf_writer headers_;    /* private: encoded name/value pairs */
    uint32_t header_count_; /* private */
    bool sent_;             /* private: a dwf_respond* was called */
} dwf_response;

typedef int (*dwf_fetch_fn)(const dwf_request *req, dwf_response *res);

/* Exports `dwf_fetch` answering with `fn`; use at most once per module, at file scope. */
#define DWF_FETCH(fn)                                                                      \
    __attribute__((export_name("dwf_fetch"))) int32_t dwf_fetch(const uint8_t *request,    \
                                                                uint32_t len) {            \
        return dwf__fetch((fn), request, len);                                             \
    }
int32_t dwf__fetch(dwf_fetch_fn fn, const uint8_t *request, uint32_t len);

/* A request header's value (name matched case-insensitively), or NULL. */
const char *dwf_request_header(const dwf_request *req, const char *name);

/* If `path` starts with `prefix`, what follows it (maybe ""), else NULL. */
const char *dwf_path_after(const char *path, const char *prefix);

/* Adds a response header (the host sets content-length and x-request-id itself). */
void dwf_response_header(dwf_response *res, const char *name, const char *value);

/* Each returns DWF_COMPLETE; the last call before the handler returns wins. */
int dwf_respond(dwf_response *res, int32_t status, dwf_bytes body); /* raw bytes */
int dwf_respond_text(dwf_response *res, int32_t status, const char *text);
/* `value` is one msgpack value; the host renders it as the JSON body. */
int dwf_respond_json(dwf_response *res, int32_t status, dwf_bytes value);

/*
 * The fetch binding: acts at once on this tenant's instances (not journaled).
 * On failure the error name says why (UnknownWorkflow, DuplicateInstance,
 * UnknownInstance, InvalidInput, InvalidState...).
 */
/* Starts `workflow` with `params` (empty = nil); `id` NULL lets the host choose. */
dwf_result dwf_fetch_create_instance(const char *workflow, dwf_bytes params, const char *id,
                                     const char **id_out);
/* The value is {id, workflow, status, output, error, created_at_ms, ...}. */
dwf_result dwf_fetch_instance_status(const char *id);
dwf_result dwf_fetch_send_event(const char *instance_id, const char *type, dwf_bytes payload);

/* ------------------------------------------------------------------------ */
/* Outbound HTTP (proposal 0003): inside a step body or a fetch handler     */
/* ------------------------------------------------------------------------ */

/*
 * The host makes the request for the guest, if the tenant's egress rules allow its URL
 * (deny by default; never a private address unless an operator allows it). A header
 * value or the body may hold "{{secret:NAME}}": the host fills in the tenant's secret on
 * the way out and takes it out of the response again. Called anywhere else than a step
 * body or a fetch handler it is AbiViolation: keep side effects in steps.
 *
 *     static bool charge(dwf_step *step, void *ctx) {
 *         dwf_http_request req = {.method = "POST", .url = "https://pay.example.com/charges",
 *                                 .json = amount_json, .idempotency = true};
 *         dwf_http_header(&req, "authorization", "Bearer {{secret:PAY_KEY}}");
 *         dwf_http_response res;
 *         dwf_result r = dwf_http_fetch(&req, &res);
 *         if (!r.ok) return dwf_step_fail_with(step, r);   // retryable as the host says
 *         ...
 *     }
 */
typedef struct {
    const char *method;     /* NULL: "GET" */
    const char *url;        /* http:// or https:// */
    dwf_bytes body;         /* the raw body (len 0: none) */
    dwf_bytes json;         /* or one msgpack value, sent as JSON (content-type defaulted) */
    int64_t timeout_ms;     /* 0 or DWF_DEFAULT: the tenant's default (30 s) */
    bool idempotency;       /* add an Idempotency-Key stable across re-runs of this call */
    dwf_writer headers_;    /* private: use dwf_http_header */
    uint32_t header_count_; /* private */
} dwf_http_request;

/* Adds a request header (framing headers like content-length are the host's). */
void dwf_http_header(dwf_http_request *req, const char *name, const char *value);

typedef struct {
    int32_t status;     /* HTTP error statuses are responses, not errors */
    const char *url;    /* after redirects */
    dwf_reader headers; /* msgpack map: lower-case name -> str */
    dwf_bytes body;
    bool has_json;      /* the content type is JSON and the body parsed */
    dwf_reader json;    /* if has_json: the body as one msgpack value */
} dwf_http_response;

/*
 * Makes the request. ok: *res is filled (and the result value is the response map).
 * !ok: error.name is EgressDenied (not retryable), EgressTimeout, EgressFailed
 * (retryable) or PayloadTooLarge, and error.retryable says whether trying again can help.
 */
dwf_result dwf_http_fetch(dwf_http_request *req, dwf_http_response *res);

/* A response header's value (name matched case-insensitively), or NULL. */
const char *dwf_http_response_header(const dwf_http_response *res, const char *name);

/* Fails the step attempt with a failed call's error: dwf_step_error if it is retryable,
 * dwf_step_fatal if not. Returns false, so a body can `return dwf_step_fail_with(...)`. */
bool dwf_step_fail_with(dwf_step *step, dwf_result failed);

/* ------------------------------------------------------------------------ */
/* Memory (the ABI exports, callable from C too)                            */
/* ------------------------------------------------------------------------ */

/* 8-byte aligned; 0 when memory cannot grow. */
void *dwf_alloc(uint32_t len);
/* Releases dwf_alloc memory; NULL, foreign pointers and double frees are ignored. */
void dwf_free(void *ptr, uint32_t len);

#endif /* DWF_H */
