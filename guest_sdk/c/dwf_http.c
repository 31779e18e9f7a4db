/*
 * dwf_http.c - outbound HTTP (guest_sdk/proposals/0003-outbound-http.md): building the
 * http_fetch request map and reading the response. A module that never calls
 * dwf_http_fetch does not import http_fetch: the linker drops all of this.
 */
#include "dwf_abi.h"
#include "dwf_internal.h"

void dwf_http_header(dwf_http_request *req, const char *name, const char *value) {
    dwf_write_str(&req->headers_, name);
    dwf_write_str(&req->headers_, value);
    req->header_count_++;
}

static void write_request(dwf_writer *w, const dwf_http_request *req) {
    bool timeout = req->timeout_ms > 0;
    dwf_write_map(w, 4 + (timeout ? 1 : 0) + (req->idempotency ? 1 : 0));
    dwf_write_str(w, "method");
    dwf_write_str(w, req->method ? req->method : "GET");
    dwf_write_str(w, "url");
    dwf_write_str(w, req->url ? req->url : "");
    dwf_write_str(w, "headers");
    dwf_write_map(w, req->header_count_);
    if (req->headers_.len) dwf_write_raw(w, dwf_writer_bytes(&req->headers_));
    if (req->json.len) {
        dwf_write_str(w, "json");
        dwf_write_raw(w, req->json);
    } else {
        dwf_write_str(w, "body");
        dwf_write_bin(w, req->body.ptr, req->body.len);
    }
    if (timeout) {
        dwf_write_str(w, "timeout_ms");
        dwf_write_int(w, req->timeout_ms);
    }
    if (req->idempotency) {
        dwf_write_str(w, "idempotency");
        dwf_write_bool(w, true);
    }
}

dwf_result dwf_http_fetch(dwf_http_request *req, dwf_http_response *res) {
    dwf_writer w = {0};
    write_request(&w, req);
    dwf_out_slot slot = {0, 0};
    int32_t code = dwf_host_http_fetch(w.data, w.len, &slot);
    dwf_writer_release(&w);
    dwf_result r = dwf__outcome("http_fetch", req->url ? req->url : "", code, &slot);
    if (!r.ok || !res) return r;
    res->status = (int32_t)dwf_get_int(&r.value, "status", 0);
    res->url = dwf_get_str(&r.value, "url", "");
    dwf_reader body;
    res->body = (dwf_bytes){0, 0};
    if (dwf_find(&r.value, "body", &body)) dwf_read_bin(&body, &res->body.ptr, &res->body.len);
    if (!dwf_find(&r.value, "headers", &res->headers))
        res->headers = dwf_reader_new((dwf_bytes){0, 0});
    res->has_json = dwf_find(&r.value, "json", &res->json);
    return r;
}

const char *dwf_http_response_header(const dwf_http_response *res, const char *name) {
    return dwf__header(&res->headers, name);
}
