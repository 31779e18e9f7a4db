/*
 * infinite_loop.c - hostile guest: never finishes (CPU budget / fuel tests).
 *
 * "spin"         params {limit: int (0), delay_ms, timeout_ms}: step "spin" whose
 *                body loops forever;
 *                the trap counts as a failed attempt, retried `limit` times,
 *                then the workflow fails with the step's error.
 * "spin_outside" loops forever outside any step.
 */
#include "dwf.h"

/* volatile: the loop must really run, not be proven endless and folded away. */
static void spin_forever(void) {
    volatile uint64_t n = 0;
    for (;;) n = n + 1;
}

static bool spin_body(dwf_step *step, void *ctx) {
    (void)step;
    (void)ctx;
    spin_forever();
    return true;
}

static int spin(const dwf_input *in) {
    dwf_step_config config = DWF_STEP_DEFAULTS;
    config.limit = dwf_get_int(&in->payload, "limit", DWF_NONE);
    config.delay_ms = dwf_get_int(&in->payload, "delay_ms", DWF_DEFAULT);
    config.timeout_ms = dwf_get_int(&in->payload, "timeout_ms", DWF_DEFAULT);
    dwf_result r = dwf_step_do("spin", &config, spin_body, NULL);
    if (!r.ok) return dwf_fail(r.error.name, r.error.message);
    return dwf_output((dwf_bytes){0, 0});
}

static int spin_outside(const dwf_input *in) {
    (void)in;
    spin_forever();
    return DWF_COMPLETE;
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("spin", spin),
    DWF_WORKFLOW("spin_outside", spin_outside),
)
