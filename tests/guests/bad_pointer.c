/*
 * bad_pointer.c - hostile guest: hands the host slices it must reject with
 * AbiViolation (never read or write out of bounds, never a silent zero).
 *
 * "oob" params {case: str ("step_ok")}:
 *   "step_ok"  step_do "oob" then step_ok with a slice far past the memory end
 *   "log"      log with a slice far past the memory end
 *   "null"     log with ptr 0 (NULL) and len 5
 *   "wrap"     set_output with ptr + len overflowing 32 bits
 *   "out_slot" step_do with an out slot past the memory end
 * Uses the raw imports: the SDK itself never builds such slices.
 */
#include "dwf.h"
#include "dwf_abi.h"

#define FAR ((const void *)(uintptr_t)0x7ff00000u) /* ~2 GiB: past any test memory */
#define WRAP ((const void *)(uintptr_t)0xffffff00u)

static int oob(const dwf_input *in) {
    const char *which = dwf_get_str(&in->payload, "case", "step_ok");
    static const char name[] = "oob";
    dwf_out_slot slot = {0, 0};

    if (dwf_streq(which, "log")) {
        dwf_host_log(DWF_LOG_INFO, FAR, 64);
    } else if (dwf_streq(which, "null")) {
        dwf_host_log(DWF_LOG_INFO, (const void *)0, 5);
    } else if (dwf_streq(which, "wrap")) {
        dwf_host_set_output(WRAP, 0x200);
    } else if (dwf_streq(which, "out_slot")) {
        dwf_host_step_do(name, sizeof name - 1, 0, 0, (dwf_out_slot *)(uintptr_t)0x7ff00000u);
    } else {
        dwf_host_step_do(name, sizeof name - 1, 0, 0, &slot);
        dwf_host_step_ok(FAR, 32);
    }
    return dwf_fail("NotRejected", dwf_cat("the host accepted bad slice case `", which, "`", NULL));
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("oob", oob),
)
