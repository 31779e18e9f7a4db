/*
 * ledger: the crash test's workload. Every step body logs "ledger-run <i>" (its
 * side effect, seen by the test in the host's log) and a short durable sleep
 * follows each step, so a SIGKILL can land anywhere: in a body, before or after
 * a checkpoint, during a sleep or a replay. With "event": TYPE it then waits for
 * an event of that type and puts its payload in the output.
 */
#include "dwf.h"

typedef struct {
    int64_t index;
} ledger_ctx;

static bool ledger_step(dwf_step *step, void *ctx) {
    char digits[DWF_ITOA_SIZE];
    int64_t index = ((ledger_ctx *)ctx)->index;
    dwf_log(DWF_LOG_INFO, dwf_cat("ledger-run ", dwf_itoa(index, digits), NULL));
    dwf_write_map(&step->result, 1);
    dwf_write_str(&step->result, "i");
    dwf_write_int(&step->result, index);
    return true;
}

static int ledger(const dwf_input *in) {
    int64_t steps = dwf_get_int(&in->payload, "steps", 5);
    int64_t gap_ms = dwf_get_int(&in->payload, "gap_ms", 10);
    const char *event_type = dwf_get_str(&in->payload, "event", NULL);
    int64_t sum = 0;
    for (int64_t i = 0; i < steps; i++) {
        ledger_ctx ctx = {.index = i};
        dwf_result done = dwf_step_do("work", NULL, ledger_step, &ctx);
        if (!done.ok) {
            return dwf_fail(done.error.name, done.error.message);
        }
        sum += dwf_get_int(&done.value, "i", -1);
        dwf_sleep("gap", gap_ms);
    }
    dwf_event event;
    if (event_type != NULL) {
        dwf_result got = dwf_wait_for_event("approval", event_type, DWF_DEFAULT, &event);
        if (!got.ok) {
            return dwf_fail(got.error.name, got.error.message);
        }
    }
    dwf_writer out = {0};
    dwf_write_map(&out, event_type != NULL ? 3 : 2);
    dwf_write_str(&out, "steps");
    dwf_write_int(&out, steps);
    dwf_write_str(&out, "sum");
    dwf_write_int(&out, sum);
    if (event_type != NULL) {
        dwf_write_str(&out, "event");
        dwf_write_raw(&out, dwf_value_bytes(&event.payload));
    }
    return dwf_output(dwf_writer_bytes(&out));
}

DWF_WORKFLOWS(DWF_WORKFLOW("ledger", ledger))
