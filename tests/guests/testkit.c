/*
 * testkit.c - small workflows the host tests drive through their params.
 * Each one exercises one ABI behaviour; see the comment above each.
 */
#include "dwf.h"

/* ---- helpers ------------------------------------------------------------ */

static int output_str(const char *s) {
    dwf_writer w = {0};
    dwf_write_str(&w, s);
    return dwf_output(dwf_writer_bytes(&w));
}

/* Fails the workflow with a durable call's error, unchanged. */
static int propagate(dwf_result r) { return dwf_fail(r.error.name, r.error.message); }

/* A step body with no side effect and a nil result. */
static bool no_op(dwf_step *step, void *ctx) {
    (void)step;
    (void)ctx;
    return true;
}

/* Runs a no-op step; false (after failing the workflow) if it did not succeed. */
static bool simple_step(const char *name) {
    dwf_result r = dwf_step_do(name, NULL, no_op, NULL);
    if (!r.ok) propagate(r);
    return r.ok;
}

/* ---- echo: the output is the payload, byte for byte --------------------- */

static int echo(const dwf_input *in) { return dwf_output(dwf_value_bytes(&in->payload)); }

/* ---- steps: {count, unbatched}; `count` steps all named "step" (occurrence
 * identity). unbatched: each step names its config, so the SDK asks the host for
 * every one (step_do / step_ok) instead of batching them (proposal 0002). */

static bool step_i(dwf_step *step, void *ctx) {
    dwf_write_map(&step->result, 1);
    dwf_write_str(&step->result, "i");
    dwf_write_int(&step->result, *(const int64_t *)ctx);
    return true;
}

static int steps(const dwf_input *in) {
    int64_t count = dwf_get_int(&in->payload, "count", 1);
    static const dwf_step_config named = {.limit = 5, .delay_ms = DWF_DEFAULT, .backoff = NULL,
                                          .timeout_ms = DWF_DEFAULT};
    bool unbatched = false;
    dwf_reader flag;
    if (dwf_find(&in->payload, "unbatched", &flag)) dwf_read_bool(&flag, &unbatched);
    for (int64_t i = 0; i < count; i++) {
        dwf_result r = dwf_step_do("step", unbatched ? &named : NULL, step_i, &i);
        if (!r.ok) return propagate(r);
        /* A replay must hand back occurrence i's own result, not another's. */
        if (dwf_get_int(&r.value, "i", -1) != i)
            return dwf_fail("ReplayMismatch", "step `step` returned another occurrence's result");
    }
    dwf_writer w = {0};
    dwf_write_map(&w, 1);
    dwf_write_str(&w, "count");
    dwf_write_int(&w, count);
    return dwf_output(dwf_writer_bytes(&w));
}

/* ---- sleeper: {ms}; step, durable sleep, step ----------------------------- */

static int sleeper(const dwf_input *in) {
    if (!simple_step("before")) return DWF_FAILED;
    dwf_sleep("nap", dwf_get_int(&in->payload, "ms", 0));
    if (!simple_step("after")) return DWF_FAILED;
    return output_str("done");
}

/* ---- sleep_until: {until_ms} --------------------------------------------- */

static int sleep_until(const dwf_input *in) {
    dwf_sleep_until("alarm", dwf_get_int(&in->payload, "until_ms", 0));
    if (!simple_step("after")) return DWF_FAILED;
    return output_str("woke");
}

/* ---- waiter: {type, timeout_ms}; outputs the event payload or "timeout" -- */

static int waiter(const dwf_input *in) {
    const char *type = dwf_get_str(&in->payload, "type", "ping");
    int64_t timeout_ms = dwf_get_int(&in->payload, "timeout_ms", DWF_DEFAULT);
    dwf_event event;
    dwf_result r = dwf_wait_for_event("wait", type, timeout_ms, &event);
    if (r.ok) return dwf_output(dwf_value_bytes(&event.payload));
    if (!dwf_streq(r.error.name, "WaitForEventTimeout")) return propagate(r);
    if (!simple_step("timed-out")) return DWF_FAILED;
    return output_str("timeout");
}

/* ---- waiter2: {type, timeout_ms}; two waits for one type -> [p1, p2] (FIFO) */

static int waiter2(const dwf_input *in) {
    const char *type = dwf_get_str(&in->payload, "type", "ping");
    int64_t timeout_ms = dwf_get_int(&in->payload, "timeout_ms", DWF_DEFAULT);
    dwf_event first, second;
    dwf_result r = dwf_wait_for_event("first", type, timeout_ms, &first);
    if (!r.ok) return propagate(r);
    r = dwf_wait_for_event("second", type, timeout_ms, &second);
    if (!r.ok) return propagate(r);
    dwf_writer w = {0};
    dwf_write_array(&w, 2);
    dwf_write_raw(&w, dwf_value_bytes(&first.payload));
    dwf_write_raw(&w, dwf_value_bytes(&second.payload));
    return dwf_output(dwf_writer_bytes(&w));
}

/* ---- flaky: {fail_attempts, limit, delay_ms, backoff, timeout_ms, non_retryable} */

typedef struct {
    int64_t fail_attempts;
    bool non_retryable;
} flaky_params;

static bool flaky_body(dwf_step *step, void *ctx) {
    const flaky_params *p = ctx;
    char num[DWF_ITOA_SIZE];
    if (p->non_retryable) return dwf_step_fatal(step, "Fatal", "asked to fail for good");
    if (step->attempt <= p->fail_attempts)
        return dwf_step_error(step, "Flaky",
                              dwf_cat("attempt ", dwf_itoa(step->attempt, num), " fails", NULL));
    dwf_write_map(&step->result, 1);
    dwf_write_str(&step->result, "attempt");
    dwf_write_int(&step->result, step->attempt);
    return true;
}

/* A config field from params: absent keeps the default, 0 is an actual zero (DWF_NONE). */
static int64_t config_param(const dwf_reader *params, const char *key) {
    int64_t value = dwf_get_int(params, key, DWF_DEFAULT);
    return value == 0 ? DWF_NONE : value;
}

static int flaky(const dwf_input *in) {
    const dwf_reader *params = &in->payload;
    flaky_params p = {
        .fail_attempts = dwf_get_int(params, "fail_attempts", 0),
        .non_retryable = dwf_get_bool(params, "non_retryable", false),
    };
    dwf_step_config config = {
        .limit = config_param(params, "limit"),
        .delay_ms = config_param(params, "delay_ms"),
        .backoff = dwf_get_str(params, "backoff", NULL),
        .timeout_ms = dwf_get_int(params, "timeout_ms", DWF_DEFAULT),
    };
    dwf_result r = dwf_step_do("flaky", &config, flaky_body, &p);
    if (!r.ok) return propagate(r);
    return dwf_output(dwf_value_bytes(&r.value)); /* {attempt} */
}

/* ---- partial_config: a config naming two fields; the others keep the defaults */

static bool always_fails(dwf_step *step, void *ctx) {
    (void)ctx;
    return dwf_step_error(step, "Nope", "this step always fails");
}

static int partial_config(const dwf_input *in) {
    (void)in;
    dwf_step_config config = {.limit = 2, .delay_ms = 100}; /* backoff, timeout_ms: 0/NULL */
    return propagate(dwf_step_do("partial", &config, always_fails, NULL));
}

/* ---- stamped: the event timestamp seen before a sleep and after -> [ts1, ts2] */

static bool stamp(dwf_step *step, void *ctx) {
    dwf_write_int(&step->result, *(const int64_t *)ctx);
    return true;
}

static int stamped(const dwf_input *in) {
    int64_t seen = in->timestamp;
    dwf_result first = dwf_step_do("first-seen", NULL, stamp, &seen);
    if (!first.ok) return propagate(first);
    dwf_sleep("nap", 1000);
    int64_t first_seen = -1;
    dwf_read_int(&first.value, &first_seen);
    dwf_writer w = {0};
    dwf_write_array(&w, 2);
    dwf_write_int(&w, first_seen);
    dwf_write_int(&w, in->timestamp);
    return dwf_output(dwf_writer_bytes(&w));
}

/* ---- caught: a step fails for good and the workflow recovers ------------- */

static bool explode(dwf_step *step, void *ctx) {
    (void)ctx;
    return dwf_step_fatal(step, "Fatal", "this step always fails");
}

static int caught(const dwf_input *in) {
    (void)in;
    dwf_result r = dwf_step_do("explode", NULL, explode, NULL);
    if (r.ok) return dwf_fail("Unexpected", "step `explode` succeeded");
    dwf_log(DWF_LOG_INFO, dwf_cat("caught ", r.error.name, ": ", r.error.message, NULL));
    if (!simple_step("recover")) return DWF_FAILED;
    return output_str("recovered");
}

/* ---- fail: the workflow fails by itself ---------------------------------- */

static int fail(const dwf_input *in) {
    (void)in;
    return dwf_fail("Boom", "requested failure");
}

/* ---- spawn: {workflow, id?, params}; outputs {id} ------------------------ */

static int spawn(const dwf_input *in) {
    const char *workflow = dwf_get_str(&in->payload, "workflow", "");
    const char *id = dwf_get_str(&in->payload, "id", NULL);
    dwf_reader params;
    dwf_bytes params_bytes = {0, 0}; /* nil when absent */
    if (dwf_find(&in->payload, "params", &params)) params_bytes = dwf_value_bytes(&params);

    const char *new_id;
    dwf_result r = dwf_create_instance("spawn", workflow, params_bytes, id, &new_id);
    if (!r.ok) return propagate(r);
    dwf_writer w = {0};
    dwf_write_map(&w, 1);
    dwf_write_str(&w, "id");
    dwf_write_str(&w, new_id ? new_id : "");
    return dwf_output(dwf_writer_bytes(&w));
}

/* ---- notify: {instance_id, type, payload} -------------------------------- */

static int notify(const dwf_input *in) {
    const char *instance_id = dwf_get_str(&in->payload, "instance_id", "");
    const char *type = dwf_get_str(&in->payload, "type", "ping");
    dwf_reader payload;
    dwf_bytes payload_bytes = {0, 0};
    if (dwf_find(&in->payload, "payload", &payload)) payload_bytes = dwf_value_bytes(&payload);

    dwf_result r = dwf_send_event("notify", instance_id, type, payload_bytes);
    if (!r.ok) return propagate(r);
    return output_str("sent");
}

/* ---- big: {bytes, kind: "bin"|"str"}; a step result of that many bytes --- */

typedef struct {
    uint32_t bytes;
    bool as_str;
} big_params;

static bool big_body(dwf_step *step, void *ctx) {
    const big_params *p = ctx;
    uint8_t *data = dwf_alloc(p->bytes);
    if (!data) return dwf_step_fatal(step, "OutOfMemory", "cannot allocate the big result");
    __builtin_memset(data, 'x', p->bytes);
    if (p->as_str) dwf_write_strn(&step->result, (const char *)data, p->bytes);
    else dwf_write_bin(&step->result, data, p->bytes);
    dwf_free(data, p->bytes);
    return true;
}

static int big(const dwf_input *in) {
    int64_t bytes = dwf_get_int(&in->payload, "bytes", 0);
    big_params p = {
        .bytes = bytes < 0 ? 0 : bytes > 0x7fffffff ? 0x7fffffff : (uint32_t)bytes,
        .as_str = dwf_streq(dwf_get_str(&in->payload, "kind", "bin"), "str"),
    };
    dwf_result r = dwf_step_do("big", NULL, big_body, &p);
    if (!r.ok) return propagate(r);
    dwf_writer w = {0};
    dwf_write_map(&w, 1);
    dwf_write_str(&w, "bytes");
    dwf_write_int(&w, p.bytes);
    return dwf_output(dwf_writer_bytes(&w));
}

/* ---- deterministic_pair / renamed_pair: same shape, different first name --
 * A test records one and replays the journal against the other to provoke
 * NondeterminismError at position 0. */

static int pair(const char *first) {
    if (!simple_step(first)) return DWF_FAILED;
    dwf_sleep("pause", 1);
    if (!simple_step("b")) return DWF_FAILED;
    return output_str("done");
}

static int deterministic_pair(const dwf_input *in) {
    (void)in;
    return pair("a");
}

static int renamed_pair(const dwf_input *in) {
    (void)in;
    return pair("x");
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("echo", echo),
    DWF_WORKFLOW("steps", steps),
    DWF_WORKFLOW("sleeper", sleeper),
    DWF_WORKFLOW("sleep_until", sleep_until),
    DWF_WORKFLOW("waiter", waiter),
    DWF_WORKFLOW("waiter2", waiter2),
    DWF_WORKFLOW("flaky", flaky),
    DWF_WORKFLOW("partial_config", partial_config),
    DWF_WORKFLOW("stamped", stamped),
    DWF_WORKFLOW("caught", caught),
    DWF_WORKFLOW("fail", fail),
    DWF_WORKFLOW("spawn", spawn),
    DWF_WORKFLOW("notify", notify),
    DWF_WORKFLOW("big", big),
    DWF_WORKFLOW("deterministic_pair", deterministic_pair),
    DWF_WORKFLOW("renamed_pair", renamed_pair),
)
