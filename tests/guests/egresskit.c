/*
 * egresskit: outbound HTTP (proposal 0003) from steps and a fetch handler, for the egress
 * tests.
 *
 * Workflow "call", params {url, method ("GET"), body (str), auth (str: an Authorization
 * value, may hold {{secret:...}}), idempotency (bool), timeout_ms, calls (1: requests in
 * the one step), retries (0), delay_ms (10), nap_ms (0), step_timeout_ms}: step "call"
 * makes the requests;
 * a failed one fails the attempt as the host says (retryable or not). Then an optional
 * durable sleep, and a step "after". Output: the step's result {status, body, calls}.
 * Workflow "outside": calls http_fetch between steps (AbiViolation).
 * Fetch handler: POST {url} -> fetches it in the handler, answers with its status and body.
 */
#include "dwf.h"

typedef struct {
    const dwf_reader *params;
} call_ctx;

static dwf_result fetch_once(const dwf_reader *p, dwf_http_response *res) {
    dwf_http_request req = {
        .method = dwf_get_str(p, "method", "GET"),
        .url = dwf_get_str(p, "url", ""),
        .timeout_ms = dwf_get_int(p, "timeout_ms", 0),
        .idempotency = dwf_get_bool(p, "idempotency", false),
    };
    const char *body = dwf_get_str(p, "body", NULL);
    if (body) req.body = (dwf_bytes){(const uint8_t *)body, dwf_strlen(body)};
    const char *auth = dwf_get_str(p, "auth", NULL);
    if (auth) dwf_http_header(&req, "authorization", auth);
    return dwf_http_fetch(&req, res);
}

static bool call_body(dwf_step *step, void *ctx) {
    const dwf_reader *p = ((call_ctx *)ctx)->params;
    int64_t calls = dwf_get_int(p, "calls", 1);
    dwf_http_response res = {0};
    for (int64_t i = 0; i < calls; i++) {
        dwf_result r = fetch_once(p, &res);
        if (!r.ok) return dwf_step_fail_with(step, r);
    }
    dwf_write_map(&step->result, 3);
    dwf_write_str(&step->result, "status");
    dwf_write_int(&step->result, res.status);
    dwf_write_str(&step->result, "body");
    dwf_write_strn(&step->result, (const char *)res.body.ptr, res.body.len);
    dwf_write_str(&step->result, "calls");
    dwf_write_int(&step->result, calls);
    return true;
}

static bool after_body(dwf_step *step, void *ctx) {
    (void)ctx;
    dwf_write_str(&step->result, "after");
    return true;
}

static int call(const dwf_input *in) {
    call_ctx ctx = {.params = &in->payload};
    dwf_step_config config = {
        .limit = dwf_get_int(&in->payload, "retries", DWF_NONE),
        .delay_ms = dwf_get_int(&in->payload, "delay_ms", 10),
        .backoff = DWF_BACKOFF_CONSTANT,
        .timeout_ms = dwf_get_int(&in->payload, "step_timeout_ms", DWF_DEFAULT),
    };
    dwf_result r = dwf_step_do("call", &config, call_body, &ctx);
    if (!r.ok) return dwf_fail(r.error.name, r.error.message);
    int64_t nap = dwf_get_int(&in->payload, "nap_ms", 0);
    if (nap > 0) dwf_sleep("nap", nap);
    dwf_result after = dwf_step_do("after", NULL, after_body, NULL);
    if (!after.ok) return dwf_fail(after.error.name, after.error.message);
    return dwf_output(dwf_value_bytes(&r.value));
}

static int outside(const dwf_input *in) {
    dwf_http_response res;
    dwf_result r = fetch_once(&in->payload, &res);
    if (!r.ok) return dwf_fail(r.error.name, r.error.message);
    return dwf_output((dwf_bytes){0, 0});
}

static int handler(const dwf_request *req, dwf_response *res) {
    if (!req->has_json) return dwf_respond_text(res, 400, "send {\"url\": ...}");
    dwf_http_response got = {0};
    dwf_result r = fetch_once(&req->json, &got);
    if (!r.ok) return dwf_respond_text(res, 502, dwf_cat(r.error.name, ": ", r.error.message, NULL));
    return dwf_respond(res, got.status, got.body);
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("call", call),
    DWF_WORKFLOW("outside", outside),
)
DWF_FETCH(handler)
