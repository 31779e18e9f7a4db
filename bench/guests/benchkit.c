/*
 * benchkit.c - the benchmark workloads (bench/). Step bodies are trivial on
 * purpose: the benchmarks measure the runtime (journal, sandbox, SQLite), not
 * the guest's own work. Each step returns {"i": index}, like DBOS's peer run.
 */
#include "dwf.h"

static bool step_i(dwf_step *step, void *ctx) {
    dwf_write_map(&step->result, 1);
    dwf_write_str(&step->result, "i");
    dwf_write_int(&step->result, *(const int64_t *)ctx);
    return true;
}

/* Runs `count` steps named "step"; false (after failing the workflow) on error. */
static bool run_steps(int64_t count, int64_t *sum) {
    for (int64_t i = 0; i < count; i++) {
        dwf_result r = dwf_step_do("step", NULL, step_i, &i);
        if (!r.ok) {
            dwf_fail(r.error.name, r.error.message);
            return false;
        }
        *sum += dwf_get_int(&r.value, "i", 0);
    }
    return true;
}

static int output_sum(int64_t sum) {
    dwf_writer w = {0};
    dwf_write_map(&w, 1);
    dwf_write_str(&w, "sum");
    dwf_write_int(&w, sum);
    return dwf_output(dwf_writer_bytes(&w));
}

/* ---- steps: {count}; the N-step workflow of the throughput benchmarks ----- */

static int steps(const dwf_input *in) {
    int64_t sum = 0;
    if (!run_steps(dwf_get_int(&in->payload, "count", 10), &sum)) return DWF_FAILED;
    return output_sum(sum);
}

/* ---- resume: {count, sleep_ms}; `count` steps, a durable sleep, one more step.
 * Woken after the sleep it replays `count` cached steps before the last one:
 * the resume benchmark. */

static int resume(const dwf_input *in) {
    int64_t sum = 0;
    if (!run_steps(dwf_get_int(&in->payload, "count", 10), &sum)) return DWF_FAILED;
    dwf_sleep("nap", dwf_get_int(&in->payload, "sleep_ms", 1000));
    int64_t last = -1;
    dwf_result r = dwf_step_do("last", NULL, step_i, &last);
    if (!r.ok) return dwf_fail(r.error.name, r.error.message);
    return output_sum(sum);
}

/* ---- sleeper: {until_ms}; sleeps until a fixed time, then one step --------- */

static int sleeper(const dwf_input *in) {
    dwf_sleep_until("alarm", dwf_get_int(&in->payload, "until_ms", 0));
    int64_t sum = 0;
    if (!run_steps(1, &sum)) return DWF_FAILED;
    return output_sum(sum);
}

/* ---- noop: no step at all (instantiate + run cost) ------------------------ */

static int noop(const dwf_input *in) {
    (void)in;
    return output_sum(0);
}

/* ---- the HTTP front door's trivial handler: 200 "ok" to any request ------ */

static int fetch(const dwf_request *req, dwf_response *res) {
    (void)req;
    return dwf_respond_text(res, 200, "ok");
}

DWF_FETCH(fetch)

DWF_WORKFLOWS(
    DWF_WORKFLOW("steps", steps),
    DWF_WORKFLOW("resume", resume),
    DWF_WORKFLOW("sleeper", sleeper),
    DWF_WORKFLOW("noop", noop),
)
