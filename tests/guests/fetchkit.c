/*
 * fetchkit.c - a fetch handler the HTTP tests drive by path, some routes
 * hostile, plus workflows that the fetch binding starts.
 *
 * Fetch routes:
 *   /echo            200 JSON {method, path, query, request_id, headers, body_len, has_json, json}
 *   /raw             200, the request body back as raw bytes, content-type from the request,
 *                    header x-echo: yes
 *   /create          JSON {workflow, params?, id?}: fetch_create_instance; 201 {id} or
 *                    422 {error: {name, message}}
 *   /status/<id>     fetch_instance_status; 200 value or 404 {error}
 *   /event/<id>      JSON {type, payload}: fetch_send_event; 202 or 404/409 {error}
 *   /busy?n=<count>[&id=<id>]  logs "fetchkit: busy", spins `count` iterations, then
 *                    (with id) creates an "echo" instance `id`; 200 "done"
 *   /trap            wasm `unreachable`
 *   /spin            loops forever (the CPU budget stops it)
 *   /step            calls step_do, a workflow-only import (AbiViolation)
 *   /fail            dwf_fail("Oops", ...)
 *   /bad-status      responds with status 42 (AbiViolation)
 *   /bad-header      responds with a content-length header (AbiViolation)
 *   /header          responds 200 with header x-value: the request body, as sent
 *   /no-response     returns without responding
 *   anything else    404 text
 * Workflows:
 *   "echo"           outputs its params
 *   "busy"           {n}: step "spin" logs "fetchkit: busy step", spins n iterations
 *   "fetch_import"   calls fetch_create_instance from a workflow (AbiViolation)
 */
#include "dwf.h"
#include "dwf_abi.h"

static void spin(int64_t n) {
    volatile int64_t i = 0; /* volatile: the loop must really run */
    while (i < n) i = i + 1;
}

/* The value of `key` in a query string "a=1&b=2" (up to the next '&'), or NULL. */
static const char *query_param(const char *query, const char *key) {
    for (const char *p = query; *p;) {
        const char *rest = dwf_path_after(p, key);
        if (rest && *rest == '=') {
            uint32_t len = 0;
            while (rest[1 + len] && rest[1 + len] != '&') len++;
            char *value = dwf_cat(rest + 1, NULL);
            value[len] = 0;
            return value;
        }
        while (*p && *p != '&') p++;
        if (*p) p++;
    }
    return NULL;
}

static int64_t query_int(const char *query, const char *key, int64_t def) {
    const char *value = query_param(query, key);
    if (!value) return def;
    int64_t v = 0;
    for (; *value >= '0' && *value <= '9'; value++) v = v * 10 + (*value - '0');
    return v;
}

static int error_json(dwf_response *res, int32_t status, const dwf_result *r) {
    dwf_writer w = {0};
    dwf_write_map(&w, 1);
    dwf_write_str(&w, "error");
    dwf_write_map(&w, 2);
    dwf_write_str(&w, "name");
    dwf_write_str(&w, r->error.name);
    dwf_write_str(&w, "message");
    dwf_write_str(&w, r->error.message);
    return dwf_respond_json(res, status, dwf_writer_bytes(&w));
}

static int echo_request(const dwf_request *req, dwf_response *res) {
    dwf_writer w = {0};
    dwf_write_map(&w, 8);
    dwf_write_str(&w, "method");
    dwf_write_str(&w, req->method);
    dwf_write_str(&w, "path");
    dwf_write_str(&w, req->path);
    dwf_write_str(&w, "query");
    dwf_write_str(&w, req->query);
    dwf_write_str(&w, "request_id");
    dwf_write_str(&w, req->request_id);
    dwf_write_str(&w, "headers");
    dwf_write_raw(&w, dwf_value_bytes(&req->headers));
    dwf_write_str(&w, "body_len");
    dwf_write_int(&w, req->body.len);
    dwf_write_str(&w, "has_json");
    dwf_write_bool(&w, req->has_json);
    dwf_write_str(&w, "json");
    dwf_write_raw(&w, dwf_value_bytes(&req->json));
    return dwf_respond_json(res, 200, dwf_writer_bytes(&w));
}

static int raw(const dwf_request *req, dwf_response *res) {
    const char *type = dwf_request_header(req, "Content-Type");
    if (type) dwf_response_header(res, "content-type", type);
    dwf_response_header(res, "x-echo", "yes");
    return dwf_respond(res, 200, req->body);
}

static int create(const dwf_request *req, dwf_response *res) {
    dwf_reader params;
    if (!dwf_find(&req->json, "params", &params)) params = dwf_reader_new((dwf_bytes){0, 0});
    const char *id;
    dwf_result r = dwf_fetch_create_instance(dwf_get_str(&req->json, "workflow", ""),
                                             dwf_value_bytes(&params),
                                             dwf_get_str(&req->json, "id", NULL), &id);
    if (!r.ok) return error_json(res, 422, &r);
    return dwf_respond_json(res, 201, dwf_value_bytes(&r.value));
}

static int status(dwf_response *res, const char *id) {
    dwf_result r = dwf_fetch_instance_status(id);
    if (!r.ok) return error_json(res, 404, &r);
    return dwf_respond_json(res, 200, dwf_value_bytes(&r.value));
}

static int event(const dwf_request *req, dwf_response *res, const char *id) {
    dwf_reader payload;
    if (!dwf_find(&req->json, "payload", &payload)) payload = dwf_reader_new((dwf_bytes){0, 0});
    dwf_result r = dwf_fetch_send_event(id, dwf_get_str(&req->json, "type", ""),
                                        dwf_value_bytes(&payload));
    if (!r.ok) return error_json(res, dwf_streq(r.error.name, "UnknownInstance") ? 404 : 409, &r);
    return dwf_respond_text(res, 202, "sent");
}

static int fetch(const dwf_request *req, dwf_response *res) {
    const char *p = req->path, *id;
    if (dwf_streq(p, "/echo")) return echo_request(req, res);
    if (dwf_streq(p, "/raw")) return raw(req, res);
    if (dwf_streq(p, "/create")) return create(req, res);
    if ((id = dwf_path_after(p, "/status/"))) return status(res, id);
    if ((id = dwf_path_after(p, "/event/"))) return event(req, res, id);
    if (dwf_streq(p, "/busy")) {
        dwf_log(DWF_LOG_INFO, "fetchkit: busy");
        spin(query_int(req->query, "n", 0));
        const char *id = query_param(req->query, "id");
        if (id) {
            dwf_result r = dwf_fetch_create_instance("echo", (dwf_bytes){0, 0}, id, NULL);
            if (!r.ok) return error_json(res, 422, &r);
        }
        return dwf_respond_text(res, 200, "done");
    }
    if (dwf_streq(p, "/trap")) __builtin_trap();
    if (dwf_streq(p, "/spin")) spin(INT64_MAX);
    if (dwf_streq(p, "/step")) {
        static const char name[] = "not-in-a-fetch";
        dwf_out_slot slot = {0, 0};
        dwf_host_step_do(name, sizeof name - 1, 0, 0, &slot);
        return dwf_respond_text(res, 200, "step_do was allowed");
    }
    if (dwf_streq(p, "/fail")) return dwf_fail("Oops", "the handler gave up on purpose");
    if (dwf_streq(p, "/bad-status")) return dwf_respond_text(res, 42, "odd");
    if (dwf_streq(p, "/bad-header")) {
        dwf_response_header(res, "Content-Length", "1000");
        return dwf_respond_text(res, 200, "short");
    }
    if (dwf_streq(p, "/header")) { /* the request body becomes response header x-value */
        char *value = dwf_alloc(req->body.len + 1);
        if (!value) return dwf_fail("OutOfMemory", "no room for the header value");
        __builtin_memcpy(value, req->body.ptr, req->body.len);
        value[req->body.len] = 0;
        dwf_response_header(res, "x-value", value);
        return dwf_respond_text(res, 200, "sent");
    }
    if (dwf_streq(p, "/no-response")) return DWF_COMPLETE;
    return dwf_respond_text(res, 404, dwf_cat("fetchkit has no route ", p, NULL));
}

DWF_FETCH(fetch)

/* ---- workflows ------------------------------------------------------------ */

static int echo(const dwf_input *in) { return dwf_output(dwf_value_bytes(&in->payload)); }

static bool busy_body(dwf_step *step, void *ctx) {
    dwf_log(DWF_LOG_INFO, "fetchkit: busy step");
    spin(*(const int64_t *)ctx);
    dwf_write_str(&step->result, "spun");
    return true;
}

static int busy(const dwf_input *in) {
    int64_t n = dwf_get_int(&in->payload, "n", 0);
    dwf_result r = dwf_step_do("spin", NULL, busy_body, &n);
    if (!r.ok) return dwf_fail(r.error.name, r.error.message);
    return dwf_output(dwf_value_bytes(&r.value));
}

static int fetch_import(const dwf_input *in) {
    (void)in;
    static const uint8_t request[] = {0x80}; /* {} */
    dwf_out_slot slot = {0, 0};
    dwf_host_fetch_create_instance(request, sizeof request, &slot);
    return dwf_fail("NotRejected", "a workflow was allowed to call fetch_create_instance");
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("echo", echo),
    DWF_WORKFLOW("busy", busy),
    DWF_WORKFLOW("fetch_import", fetch_import),
)
