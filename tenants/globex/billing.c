/*
 * globex: charging a card through a flaky payment gateway.
 *
 * Workflow "billing_retry", params:
 *   {amount_cents: int, fail_attempts: int (2), decline: bool (false),
 *    retry_delay_ms: int (1000)}
 * Step "charge-card" retries up to 5 times with exponential backoff. The
 * simulated gateway times out (retryable "GatewayTimeout") on the first
 * `fail_attempts` attempts; after that, `decline` makes the issuer refuse the
 * card ("CardDeclined", not retryable: retrying cannot help).
 * Success output: {charged_cents, attempts}. On final failure the customer is
 * notified and the workflow fails with "PaymentFailed".
 */
#include "dwf.h"

typedef struct {
    int64_t amount_cents;
    int64_t fail_attempts;
    bool decline;
} charge;

static bool charge_card(dwf_step *step, void *ctx) {
    const charge *c = ctx;
    char num[DWF_ITOA_SIZE];
    dwf_log(DWF_LOG_INFO, dwf_cat("gateway: charge attempt ", dwf_itoa(step->attempt, num), NULL));
    if (step->attempt <= c->fail_attempts)
        return dwf_step_error(step, "GatewayTimeout", "the payment gateway did not answer in time");
    if (c->decline) return dwf_step_fatal(step, "CardDeclined", "the issuer declined the card");

    dwf_write_map(&step->result, 2);
    dwf_write_str(&step->result, "charged_cents");
    dwf_write_int(&step->result, c->amount_cents);
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
        .fail_attempts = dwf_get_int(&in->payload, "fail_attempts", 2),
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
    dwf_write_map(&w, 2);
    dwf_write_str(&w, "charged_cents");
    dwf_write_int(&w, dwf_get_int(&r.value, "charged_cents", 0));
    dwf_write_str(&w, "attempts");
    dwf_write_int(&w, dwf_get_int(&r.value, "attempt", 0));
    return dwf_output(dwf_writer_bytes(&w));
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("billing_retry", billing_retry),
)
