/*
 * acme: the signup front door (a fetch handler, guest_sdk/proposals/0001).
 *
 * Requests sent to `dwf serve` with `x-tenant-id: acme` land here:
 *   POST /signup        JSON {email, id?, nudge_after_ms?, approval_timeout_ms?}
 *                       starts an "onboarding" instance with that object as params;
 *                       201 {id, status_url}
 *   GET  /status/<id>   200 {id, workflow, status, output, error, ...}; 404 if unknown
 *   POST /approve/<id>  JSON {approved: bool}: sends the manager's "approval" event; 202
 * Anything else is 404. Errors are JSON {error: {code, message}}.
 */
#include "dwf.h"

static int error(dwf_response *res, int32_t status, const char *code, const char *message) {
    dwf_writer w = {0};
    dwf_write_map(&w, 1);
    dwf_write_str(&w, "error");
    dwf_write_map(&w, 2);
    dwf_write_str(&w, "code");
    dwf_write_str(&w, code);
    dwf_write_str(&w, "message");
    dwf_write_str(&w, message);
    return dwf_respond_json(res, status, dwf_writer_bytes(&w));
}

/* A binding call's failure as an HTTP answer: the caller's fault, or not found. */
static int binding_error(dwf_response *res, const dwf_result *r) {
    int32_t status = 400;
    if (dwf_streq(r->error.name, "UnknownInstance")) status = 404;
    else if (dwf_streq(r->error.name, "DuplicateInstance") ||
             dwf_streq(r->error.name, "InvalidState"))
        status = 409;
    return error(res, status, r->error.name, r->error.message);
}

static int signup(const dwf_request *req, dwf_response *res) {
    if (!req->has_json || dwf_peek(&req->json) != DWF_T_MAP)
        return error(res, 400, "invalid_body",
                     "send a JSON object {\"email\": ...} with content-type application/json");
    const char *email = dwf_get_str(&req->json, "email", NULL);
    if (!email || !*email) return error(res, 400, "invalid_body", "`email` (a string) is required");

    const char *id = dwf_get_str(&req->json, "id", NULL);
    const char *created;
    dwf_result r = dwf_fetch_create_instance("onboarding", dwf_value_bytes(&req->json), id,
                                             &created);
    if (!r.ok) return binding_error(res, &r);
    dwf_log(DWF_LOG_INFO, dwf_cat("signup: ", email, " is onboarding as ", created, NULL));

    const char *status_url = dwf_cat("/status/", created, NULL);
    dwf_writer w = {0};
    dwf_write_map(&w, 2);
    dwf_write_str(&w, "id");
    dwf_write_str(&w, created);
    dwf_write_str(&w, "status_url");
    dwf_write_str(&w, status_url);
    dwf_response_header(res, "location", status_url);
    return dwf_respond_json(res, 201, dwf_writer_bytes(&w));
}

static int status(dwf_response *res, const char *id) {
    dwf_result r = dwf_fetch_instance_status(id);
    if (!r.ok) return binding_error(res, &r);
    return dwf_respond_json(res, 200, dwf_value_bytes(&r.value));
}

static int approve(const dwf_request *req, dwf_response *res, const char *id) {
    bool approved = req->has_json && dwf_get_bool(&req->json, "approved", false);
    dwf_writer payload = {0};
    dwf_write_map(&payload, 1);
    dwf_write_str(&payload, "approved");
    dwf_write_bool(&payload, approved);
    dwf_result r = dwf_fetch_send_event(id, "approval", dwf_writer_bytes(&payload));
    if (!r.ok) return binding_error(res, &r);

    dwf_writer w = {0};
    dwf_write_map(&w, 2);
    dwf_write_str(&w, "id");
    dwf_write_str(&w, id);
    dwf_write_str(&w, "approved");
    dwf_write_bool(&w, approved);
    return dwf_respond_json(res, 202, dwf_writer_bytes(&w));
}

static int acme_fetch(const dwf_request *req, dwf_response *res) {
    const char *id;
    bool get = dwf_streq(req->method, "GET"), post = dwf_streq(req->method, "POST");
    if (post && dwf_streq(req->path, "/signup")) return signup(req, res);
    if (get && (id = dwf_path_after(req->path, "/status/")) && *id) return status(res, id);
    if (post && (id = dwf_path_after(req->path, "/approve/")) && *id) return approve(req, res, id);
    return error(res, 404, "not_found",
                 dwf_cat("acme has no route ", req->method, " ", req->path, NULL));
}

DWF_FETCH(acme_fetch)
