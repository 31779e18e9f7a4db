/*
 * dwf.c - the ABI exports (dwf_abi_version, dwf_describe, dwf_run): the
 * manifest and dispatching each invocation by workflow name. The durable calls
 * a workflow makes live in dwf_durable.c, dwf_alloc / dwf_free in dwf_mem.c,
 * the msgpack codec in dwf_msgpack.c.
 */
#include "dwf_abi.h"
#include "dwf_internal.h"

/* ------------------------------------------------------------------------ */
/* Exports                                                                  */
/* ------------------------------------------------------------------------ */

__attribute__((export_name("dwf_abi_version"))) int32_t dwf_abi_version(void) {
    return DWF_ABI_VERSION;
}

__attribute__((export_name("dwf_describe"))) int32_t dwf_describe(void) {
    dwf_writer w = {0};
    dwf__write_manifest_head(&w, DWF_SDK_NAME, dwf_workflow_count);
    for (uint32_t i = 0; i < dwf_workflow_count; i++) dwf_write_str(&w, dwf_workflows[i].name);
    dwf_host_set_output(w.data, w.len);
    dwf_writer_release(&w);
    return 0;
}

/* Reads the dwf_run event map; the payload stays a reader into the event bytes. */
static bool decode_event(dwf_bytes event, dwf_input *in) {
    dwf_reader r = dwf_reader_new(event);
    if (dwf_peek(&r) != DWF_T_MAP) return false;
    if (!dwf_find(&r, "payload", &in->payload)) in->payload = dwf__nil_reader();
    in->timestamp = dwf_get_int(&r, "timestamp", 0);
    in->instance_id = dwf_get_str(&r, "instance_id", NULL);
    in->workflow = dwf_get_str(&r, "workflow", NULL);
    dwf__journal_begin(&r);
    return in->instance_id && in->workflow;
}

static int unknown_workflow(const char *name) {
    char *known = "";
    for (uint32_t i = 0; i < dwf_workflow_count; i++)
        known = dwf_cat(known, i ? ", " : "", dwf_workflows[i].name, NULL);
    return dwf_fail("UnknownWorkflow", dwf_cat("this module has no workflow named `", name,
                                               "` (it has: ", known, ")", NULL));
}

__attribute__((export_name("dwf_run"))) int32_t dwf_run(const uint8_t *event, uint32_t len) {
    dwf_input in;
    if (!decode_event((dwf_bytes){event, len}, &in))
        return dwf_fail("InvalidEvent", "dwf_run needs a msgpack map with string `instance_id` "
                                        "and `workflow` (see guest_sdk/ABI.md)");
    for (uint32_t i = 0; i < dwf_workflow_count; i++) {
        if (!dwf_streq(dwf_workflows[i].name, in.workflow)) continue;
        int rc = dwf_workflows[i].run(&in);
        /* A workflow that called dwf_fail has failed, whatever it returned. */
        return rc != DWF_COMPLETE || dwf__workflow_failed() ? DWF_RUN_FAILED : DWF_RUN_COMPLETE;
    }
    return unknown_workflow(in.workflow);
}

