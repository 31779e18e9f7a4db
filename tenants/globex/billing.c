/*
 * globex: charging a card through a real payment API over HTTP (outbound HTTP,
 * guest_sdk/proposals/0003-outbound-http.md).
 *
 * Workflow "billing_retry", params:
 *   {amount_cents: int, gateway_url: str ("http://127.0.0.1:8091"),
 *    retry_delay_ms: int (1000), fail_attempts: int (0), decline: bool (false)}
 * Step "charge-card" POSTs {amount_cents} as JSON to <gateway_url>/v1/charges with the
 * tenant's API key ({{secret:PAYMENTS_API_KEY}}: the host fills it in, the guest never
 * sees it) and an idempotency key, retrying up to 5 times with exponential backoff when
 * the gateway is unavailable (HTTP 5xx, a timeout). A declined card (HTTP 402) is not
 * retried. `fail_attempts` and `decline` are sent along for the stand-in gateway
 * (scripts/payment_api.py) to simulate an outage and a decline.
 * Success output: {charged_cents, charge_id, attempts}. On final failure the customer is
 * notified and the workflow fails with "PaymentFailed".
 */
#include "dwf.h"

typedef struct {
    int64_t amount_cents;
    const char *gateway_url;
    int64_t fail_attempts;
    bool decline;
} charge;

static bool charge_card(dwf_step *step, void *ctx) {
    const charge *c = ctx;
    char num[DWF_ITOA_SIZE];
    dwf_writer body = {0};
    dwf_write_map(&body, 3);
    dwf_write_str(&body, "amount_cents");
    dwf_write_int(&body, c->amount_cents);
    dwf_write_str(&body, "simulate_failures");
    dwf_write_int(&body, c->fail_attempts);
    dwf_write_str(&body, "simulate_decline");
    dwf_write_bool(&body, c->decline);

    dwf_http_request req = {
        .method = "POST",
        .url = dwf_cat(c->gateway_url, "/v1/charges", NULL),
        .json = dwf_writer_bytes(&body),
        .timeout_ms = 5000,
        .idempotency = true, /* a re-run after a crash must not charge twice */
    };
    dwf_http_header(&req, "authorization", "Bearer {{secret:PAYMENTS_API_KEY}}");
    dwf_log(DWF_LOG_INFO, dwf_cat("gateway: charge attempt ", dwf_itoa(step->attempt, num), NULL));
    dwf_http_response res;
    dwf_result r = dwf_http_fetch(&req, &res);
    if (!r.ok) return dwf_step_fail_with(step, r); /* denied, timed out, unreachable */
    if (res.status == 402) return dwf_step_fatal(step, "CardDeclined", "the issuer declined the card");
    if (res.status >= 500)
        return dwf_step_error(step, "GatewayUnavailable",
                              dwf_cat("the payment gateway answered ", dwf_itoa(res.status, num), NULL));
    if (res.status != 201 && res.status != 200)
        return dwf_step_fatal(step, "GatewayRejected",
                              dwf_cat("the payment gateway answered ", dwf_itoa(res.status, num), NULL));

    const char *charge_id = res.has_json ? dwf_get_str(&res.json, "id", "?") : "?";
    dwf_write_map(&step->result, 3);
    dwf_write_str(&step->result, "charged_cents");
    dwf_write_int(&step->result, c->amount_cents);
    dwf_write_str(&step->result, "charge_id");
    dwf_write_str(&step->result, charge_id);
    dwf_write_str(&step->result, "attempt");
    dwf_write_int(&step->result, step->attempt);
    return true;
}

static bool notify_customer(dwf_step *step, void *ctx) {
    const dwf_error *why = ctx;
    dwf_log(DWF_LOG_INFO, dwf_cat("mail: telling the customer the payment failed (", why->name,
                                  ")", NULL));
    dwf_write_map(&step->result, 1);
    dwf_write_str(&step->result, "reason");
    dwf_write_str(&step->result, why->name);
    return true;
}

static int billing_retry(const dwf_input *in) {
    char num[DWF_ITOA_SIZE];
    charge c = {
        .amount_cents = dwf_get_int(&in->payload, "amount_cents", -1),
        .gateway_url = dwf_get_str(&in->payload, "gateway_url", "http://127.0.0.1:8091"),
        .fail_attempts = dwf_get_int(&in->payload, "fail_attempts", 0),
        .decline = dwf_get_bool(&in->payload, "decline", false),
    };
    if (c.amount_cents < 0)
        return dwf_fail("InvalidParams", "`amount_cents` (a non-negative int) is required");
    dwf_step_config retry = {
        .limit = 5,
        .delay_ms = dwf_get_int(&in->payload, "retry_delay_ms", 1000),
        .backoff = DWF_BACKOFF_EXPONENTIAL,
        .timeout_ms = DWF_DEFAULT,
    };

    dwf_log(DWF_LOG_INFO, dwf_cat("billing: charging ", dwf_itoa(c.amount_cents, num), " cents", NULL));
    dwf_result r = dwf_step_do("charge-card", &retry, charge_card, &c);
    if (!r.ok) {
        dwf_log(DWF_LOG_WARNING, dwf_cat("billing: charge failed for good: ", r.error.name, NULL));
        /* The workflow fails either way; a failed notification only adds to the log. */
        dwf_result n = dwf_step_do("notify-customer", NULL, notify_customer, &r.error);
        if (!n.ok)
            dwf_log(DWF_LOG_ERROR, dwf_cat("billing: could not notify: ", n.error.name, NULL));
        return dwf_fail("PaymentFailed", dwf_cat("charging ", dwf_itoa(c.amount_cents, num),
                                                 " cents failed: ", r.error.name, ": ",
                                                 r.error.message, NULL));
    }

    dwf_writer w = {0};
    dwf_write_map(&w, 3);
    dwf_write_str(&w, "charged_cents");
    dwf_write_int(&w, dwf_get_int(&r.value, "charged_cents", 0));
    dwf_write_str(&w, "charge_id");
    dwf_write_str(&w, dwf_get_str(&r.value, "charge_id", "?"));
    dwf_write_str(&w, "attempts");
    dwf_write_int(&w, dwf_get_int(&r.value, "attempt", 0));
    return dwf_output(dwf_writer_bytes(&w));
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("billing_retry", billing_retry),
)
