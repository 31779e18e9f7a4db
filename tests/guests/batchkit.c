/*
 * batchkit.c - workflows whose new steps the SDK batches (proposal 0002), for
 * the cases where a batched step does something other than succeed.
 *
 *   trap_once  {count}: `count` steps, then "boom", whose first attempt traps
 *   fail_once  {count}: `count` steps, then "flaky", whose first attempt fails
 *   nested     one step whose body makes a durable call (dwf_now)
 *   around     {count}: `count` steps, a 1 s sleep, `count` more steps
 * Each step's result is {"i": index, "attempt": attempt}; the output is the
 * number of steps that returned their own index.
 */
#include "dwf.h"

typedef struct {
    int64_t index;
} step_ctx;

static bool write_result(dwf_step *step, int64_t index) {
    dwf_write_map(&step->result, 2);
    dwf_write_str(&step->result, "i");
    dwf_write_int(&step->result, index);
    dwf_write_str(&step->result, "attempt");
    dwf_write_int(&step->result, step->attempt);
    return true;
}

static bool plain(dwf_step *step, void *ctx) {
    return write_result(step, ((step_ctx *)ctx)->index);
}

static bool trap_first(dwf_step *step, void *ctx) {
    if (step->attempt == 1) __builtin_trap();
    return write_result(step, ((step_ctx *)ctx)->index);
}

static bool fail_first(dwf_step *step, void *ctx) {
    if (step->attempt == 1) return dwf_step_error(step, "FirstAttempt", "the first attempt fails");
    return write_result(step, ((step_ctx *)ctx)->index);
}

static bool calls_now(dwf_step *step, void *ctx) {
    (void)ctx;
    dwf_now("inside"); /* not allowed in a step body: the host fails the instance */
    return write_result(step, 0);
}

/* Runs `name` with `body`; counts it in *good when it returned its own index. */
static bool run(const char *name, dwf_step_fn body, int64_t index, int64_t *good) {
    step_ctx ctx = {index};
    dwf_result r = dwf_step_do(name, NULL, body, &ctx);
    if (!r.ok) {
        dwf_fail(r.error.name, r.error.message);
        return false;
    }
    *good += dwf_get_int(&r.value, "i", -1) == index;
    return true;
}

static bool run_steps(int64_t from, int64_t count, int64_t *good) {
    for (int64_t i = from; i < from + count; i++)
        if (!run("step", plain, i, good)) return false;
    return true;
}

static int output_good(int64_t good) {
    dwf_writer w = {0};
    dwf_write_int(&w, good);
    return dwf_output(dwf_writer_bytes(&w));
}

static int trap_once(const dwf_input *in) {
    int64_t count = dwf_get_int(&in->payload, "count", 3), good = 0;
    if (!run_steps(0, count, &good) || !run("boom", trap_first, count, &good)) return DWF_FAILED;
    return output_good(good);
}

static int fail_once(const dwf_input *in) {
    int64_t count = dwf_get_int(&in->payload, "count", 3), good = 0;
    if (!run_steps(0, count, &good) || !run("flaky", fail_first, count, &good)) return DWF_FAILED;
    return output_good(good);
}

static int nested(const dwf_input *in) {
    (void)in;
    int64_t good = 0;
    if (!run("outer", calls_now, 0, &good)) return DWF_FAILED;
    return output_good(good);
}

static int around(const dwf_input *in) {
    int64_t count = dwf_get_int(&in->payload, "count", 3), good = 0;
    if (!run_steps(0, count, &good)) return DWF_FAILED;
    dwf_sleep("nap", 1000);
    if (!run_steps(count, count, &good)) return DWF_FAILED;
    return output_good(good);
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("trap_once", trap_once),
    DWF_WORKFLOW("fail_once", fail_once),
    DWF_WORKFLOW("nested", nested),
    DWF_WORKFLOW("around", around),
)
