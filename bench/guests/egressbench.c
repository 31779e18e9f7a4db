/*
 * egressbench: outbound HTTP overhead (`make bench`, section egress). Workflow "gets",
 * params {url, count}: `count` steps, each one GET of `url` (batched steps: the common
 * case, a step with the default config). Output: {count}.
 */
#include "dwf.h"

static bool get(dwf_step *step, void *ctx) {
    dwf_http_request req = {.url = ctx};
    dwf_http_response res;
    dwf_result r = dwf_http_fetch(&req, &res);
    if (!r.ok) return dwf_step_fail_with(step, r);
    dwf_write_int(&step->result, res.status);
    return true;
}

static int gets(const dwf_input *in) {
    const char *url = dwf_get_str(&in->payload, "url", "");
    int64_t count = dwf_get_int(&in->payload, "count", 1);
    for (int64_t i = 0; i < count; i++) {
        dwf_result r = dwf_step_do("get", NULL, get, (void *)url);
        if (!r.ok) return dwf_fail(r.error.name, r.error.message);
    }
    dwf_writer w = {0};
    dwf_write_map(&w, 1);
    dwf_write_str(&w, "count");
    dwf_write_int(&w, count);
    return dwf_output(dwf_writer_bytes(&w));
}

DWF_WORKFLOWS(DWF_WORKFLOW("gets", gets))
