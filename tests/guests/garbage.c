/*
 * garbage.c - hostile guest: hands the host bytes that are not exactly one
 * well-formed msgpack value (the host must answer AbiViolation).
 *
 * "garbage" params {case: str ("reserved"), target: "step_ok"|"output"|"error" ("step_ok")}:
 *   "reserved"  0xc1, a byte msgpack never uses
 *   "truncated" a str8 header claiming 16 bytes followed by 2
 *   "trailing"  two nils: a valid value plus trailing bytes
 *   "map"       a map with a key and no value
 *   "empty"     zero bytes
 * `target` picks where they go: a step result (after a raw step_do), the
 * workflow output, or the workflow error.
 */
#include "dwf.h"
#include "dwf_abi.h"

static const uint8_t reserved[] = {0xc1};
static const uint8_t truncated[] = {0xd9, 0x10, 'a', 'b'};
static const uint8_t trailing[] = {0xc0, 0xc0};
static const uint8_t map_no_value[] = {0x81, 0xa1, 'k'};
static const uint8_t nothing[] = {0};

static int garbage(const dwf_input *in) {
    const char *which = dwf_get_str(&in->payload, "case", "reserved");
    const char *target = dwf_get_str(&in->payload, "target", "step_ok");
    dwf_bytes bad = {reserved, sizeof reserved};
    if (dwf_streq(which, "truncated")) bad = (dwf_bytes){truncated, sizeof truncated};
    else if (dwf_streq(which, "trailing")) bad = (dwf_bytes){trailing, sizeof trailing};
    else if (dwf_streq(which, "map")) bad = (dwf_bytes){map_no_value, sizeof map_no_value};
    else if (dwf_streq(which, "empty")) bad = (dwf_bytes){nothing, 0};

    if (dwf_streq(target, "output")) {
        dwf_host_set_output(bad.ptr, bad.len);
        return DWF_COMPLETE;
    }
    if (dwf_streq(target, "error")) {
        dwf_host_set_error(bad.ptr, bad.len);
        return DWF_FAILED;
    }
    static const char name[] = "garbage";
    dwf_out_slot slot = {0, 0};
    dwf_host_step_do(name, sizeof name - 1, 0, 0, &slot);
    dwf_host_step_ok(bad.ptr, bad.len);
    return dwf_fail("NotRejected", dwf_cat("the host accepted garbage case `", which, "`", NULL));
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("garbage", garbage),
)
