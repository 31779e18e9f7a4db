/*
 * dwf_fetch.c - fetch handlers (guest_sdk/proposals/0001-fetch-handlers.md):
 * decoding the dwf_fetch request, building the response map, and the fetch
 * binding imports. A module that never uses DWF_FETCH exports no dwf_fetch,
 * and the linker drops all of this.
 */
#include "dwf_abi.h"
#include "dwf_internal.h"

static const uint8_t nil_value[1] = {0xc0};

static dwf_bytes or_nil(dwf_bytes value) {
    return value.len ? value : (dwf_bytes){nil_value, 1};
}

static bool decode_request(dwf_bytes raw, dwf_request *req) {
    dwf_reader r = dwf_reader_new(raw);
    if (dwf_peek(&r) != DWF_T_MAP) return false;
    req->method = dwf_get_str(&r, "method", NULL);
    req->path = dwf_get_str(&r, "path", NULL);
    req->query = dwf_get_str(&r, "query", "");
    req->request_id = dwf_get_str(&r, "request_id", "");
    if (!dwf_find(&r, "headers", &req->headers) || dwf_peek(&req->headers) != DWF_T_MAP)
        return false;
    dwf_reader body;
    req->body = (dwf_bytes){0, 0};
    if (dwf_find(&r, "body", &body) && !dwf_read_bin(&body, &req->body.ptr, &req->body.len))
        return false;
    req->has_json = dwf_find(&r, "json", &req->json);
    if (!req->has_json) req->json = dwf_reader_new((dwf_bytes){nil_value, 1});
    return req->method && req->path;
}

int32_t dwf__fetch(dwf_fetch_fn fn, const uint8_t *request, uint32_t len) {
    dwf_request req;
    if (!decode_request((dwf_bytes){request, len}, &req))
        return dwf_fail("InvalidRequest", "dwf_fetch needs a msgpack map with string `method` "
                                          "and `path` and a `headers` map (see guest_sdk/ABI.md)");
    dwf_response res = {0};
    int rc = fn(&req, &res);
    if (rc != DWF_COMPLETE) return DWF_FAILED;
    if (!res.sent_)
        return dwf_fail("NoResponse", "the fetch handler returned without calling dwf_respond*");
    return DWF_COMPLETE;
}

const char *dwf_request_header(const dwf_request *req, const char *name) {
    return dwf__header(&req->headers, name);
}

const char *dwf_path_after(const char *path, const char *prefix) {
    for (; *prefix; prefix++, path++)
        if (*path != *prefix) return NULL;
    return path;
}

void dwf_response_header(dwf_response *res, const char *name, const char *value) {
    dwf_write_str(&res->headers_, name);
    dwf_write_str(&res->headers_, value);
    res->header_count_++;
}

/* {status, headers, <body_key>: value}, handed to the host with set_output. */
static int respond(dwf_response *res, int32_t status, const char *body_key, dwf_bytes value) {
    dwf_writer w = {0};
    dwf_write_map(&w, 3);
    dwf_write_str(&w, "status");
    dwf_write_int(&w, status);
    dwf_write_str(&w, "headers");
    dwf_write_map(&w, res->header_count_);
    if (res->headers_.len) dwf_write_raw(&w, dwf_writer_bytes(&res->headers_));
    dwf_write_str(&w, body_key);
    dwf_write_raw(&w, value);
    dwf_host_set_output(w.data, w.len);
    dwf_writer_release(&w);
    res->sent_ = true;
    return DWF_COMPLETE;
}

int dwf_respond(dwf_response *res, int32_t status, dwf_bytes body) {
    dwf_writer bin = {0};
    dwf_write_bin(&bin, body.ptr, body.len);
    int rc = respond(res, status, "body", dwf_writer_bytes(&bin));
    dwf_writer_release(&bin);
    return rc;
}

int dwf_respond_text(dwf_response *res, int32_t status, const char *text) {
    dwf_writer str = {0};
    dwf_write_str(&str, text);
    int rc = respond(res, status, "body", dwf_writer_bytes(&str));
    dwf_writer_release(&str);
    return rc;
}

int dwf_respond_json(dwf_response *res, int32_t status, dwf_bytes value) {
    return respond(res, status, "json", or_nil(value));
}

/* ------------------------------------------------------------------------ */
/* The fetch binding                                                        */
/* ------------------------------------------------------------------------ */

typedef int32_t (*binding_import)(const void *ptr, uint32_t len, dwf_out_slot *out);

static dwf_result call(const char *name, binding_import import, dwf_writer *request) {
    dwf_out_slot slot = {0, 0};
    int32_t code = import(request->data, request->len, &slot);
    dwf_writer_release(request);
    return dwf__outcome("fetch import", name, code, &slot);
}

dwf_result dwf_fetch_create_instance(const char *workflow, dwf_bytes params, const char *id,
                                     const char **id_out) {
    dwf_writer req = {0};
    dwf_write_map(&req, id ? 3 : 2);
    dwf_write_str(&req, "workflow");
    dwf_write_str(&req, workflow);
    dwf_write_str(&req, "params");
    dwf_write_raw(&req, or_nil(params));
    if (id) {
        dwf_write_str(&req, "id");
        dwf_write_str(&req, id);
    }
    dwf_result res = call("fetch_create_instance", dwf_host_fetch_create_instance, &req);
    if (id_out) *id_out = res.ok ? dwf_get_str(&res.value, "id", NULL) : NULL;
    return res;
}

dwf_result dwf_fetch_instance_status(const char *id) {
    dwf_writer req = {0};
    dwf_write_map(&req, 1);
    dwf_write_str(&req, "id");
    dwf_write_str(&req, id);
    return call("fetch_instance_status", dwf_host_fetch_instance_status, &req);
}

dwf_result dwf_fetch_send_event(const char *instance_id, const char *type, dwf_bytes payload) {
    dwf_writer req = {0};
    dwf_write_map(&req, 3);
    dwf_write_str(&req, "instance_id");
    dwf_write_str(&req, instance_id);
    dwf_write_str(&req, "type");
    dwf_write_str(&req, type);
    dwf_write_str(&req, "payload");
    dwf_write_raw(&req, or_nil(payload));
    return call("fetch_send_event", dwf_host_fetch_send_event, &req);
}
