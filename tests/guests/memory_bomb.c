/*
 * memory_bomb.c - hostile guest: grows memory until the host refuses.
 *
 * "bomb" params {limit: int (0)}: step "bomb" whose body grows memory 1 MiB at
 * a time until memory.grow fails (returns -1), then traps (unreachable). With
 * `limit` retries (default none) the workflow then fails with the step's error.
 */
#include "dwf.h"

static bool bomb_body(dwf_step *step, void *ctx) {
    (void)step;
    (void)ctx;
    while (__builtin_wasm_memory_grow(0, 16) != (size_t)-1) {
    }
    __builtin_trap();
}

static int bomb(const dwf_input *in) {
    dwf_step_config config = DWF_STEP_DEFAULTS;
    config.limit = dwf_get_int(&in->payload, "limit", DWF_NONE);
    dwf_result r = dwf_step_do("bomb", &config, bomb_body, NULL);
    if (!r.ok) return dwf_fail(r.error.name, r.error.message);
    return dwf_output((dwf_bytes){0, 0});
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("bomb", bomb),
)
