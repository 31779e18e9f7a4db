/*
 * deep_recursion.c - hostile guest: recursion without end.
 *
 * "recurse" params {frame: int (0), in_step: bool (true)}: recurses forever.
 * With frame > 0 each call keeps a buffer on the C shadow stack in linear
 * memory (overflowing it must trap, not corrupt the data below); with 0 only
 * the wasm call stack grows (the engine's stack limit must trap).
 */
#include "dwf.h"

static volatile int64_t sink;

static int64_t dive(int64_t depth, int64_t frame);
/* Called through a volatile pointer so the compiler cannot turn the recursion into a loop. */
static int64_t (*volatile next_dive)(int64_t, int64_t) = dive;

static int64_t dive(int64_t depth, int64_t frame) {
    if (frame > 0) {
        volatile uint8_t buffer[256];
        buffer[depth % 256] = (uint8_t)depth;
        sink = buffer[(depth * 7) % 256];
    }
    return next_dive(depth + 1, frame) + 1;
}

static bool dive_body(dwf_step *step, void *frame) {
    dwf_write_int(&step->result, dive(0, *(int64_t *)frame));
    return true;
}

static int recurse(const dwf_input *in) {
    int64_t frame = dwf_get_int(&in->payload, "frame", 0);
    if (!dwf_get_bool(&in->payload, "in_step", true)) {
        sink = dive(0, frame);
        return dwf_output((dwf_bytes){0, 0});
    }
    dwf_step_config config = DWF_STEP_DEFAULTS;
    config.limit = DWF_NONE;
    dwf_result r = dwf_step_do("dive", &config, dive_body, &frame);
    if (!r.ok) return dwf_fail(r.error.name, r.error.message);
    return dwf_output(dwf_value_bytes(&r.value));
}

DWF_WORKFLOWS(DWF_WORKFLOW("recurse", recurse))
