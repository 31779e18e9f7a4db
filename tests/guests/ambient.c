/*
 * ambient.c - the guest's only clock and entropy are journaled host calls.
 *
 * "clock": now "started", random "nonce" (16 bytes), a durable sleep, then
 * now "woke"; outputs {started, woke, nonce} so a test can check replays see
 * the recorded values.
 * "greedy_random": asks for more random bytes than the ABI allows.
 */
#include "dwf.h"

static int clock_workflow(const dwf_input *in) {
    int64_t started = dwf_now("started");
    uint8_t nonce[16];
    dwf_random("nonce", nonce, sizeof nonce);
    dwf_sleep("nap", dwf_get_int(&in->payload, "ms", 1000));
    int64_t woke = dwf_now("woke");
    dwf_writer out = {0};
    dwf_write_map(&out, 3);
    dwf_write_str(&out, "started");
    dwf_write_int(&out, started);
    dwf_write_str(&out, "woke");
    dwf_write_int(&out, woke);
    dwf_write_str(&out, "nonce");
    dwf_write_bin(&out, nonce, sizeof nonce);
    return dwf_output(dwf_writer_bytes(&out));
}

static uint8_t big_buffer[DWF_RANDOM_MAX + 1];

static int greedy_random(const dwf_input *in) {
    (void)in;
    dwf_random("too-much", big_buffer, sizeof big_buffer);
    return dwf_fail("NotRejected", "the host handed out more random bytes than allowed");
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("clock", clock_workflow),
    DWF_WORKFLOW("greedy_random", greedy_random),
)
