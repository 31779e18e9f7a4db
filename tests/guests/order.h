/*
 * order.h - one workflow, "order", in three releases, for the deploy check, upgrade and
 * replay tests. order_v1.c, order_v2.c and order_v3.c each define ORDER_VERSION and
 * include this file, so the releases differ only where the #if says.
 *
 *   v1: do "reserve", sleep "cool-off" {ms}, do "charge", wait "approval", output
 *   v2: v1 then do "receipt": compatible with every v1 instance in flight
 *   v3: "charge" renamed "charge-card": compatible only with instances not yet past
 *       the sleep (their journals never recorded "charge")
 */
#include "dwf.h"

#ifndef ORDER_VERSION
#error "define ORDER_VERSION before including order.h"
#endif

#if ORDER_VERSION == 3
#define CHARGE_STEP "charge-card"
#else
#define CHARGE_STEP "charge"
#endif

static bool amount_result(dwf_step *step, void *ctx) {
    dwf_write_int(&step->result, *(const int64_t *)ctx);
    return true;
}

static int order(const dwf_input *in) {
    int64_t amount = dwf_get_int(&in->payload, "amount", 0);
    dwf_result reserved = dwf_step_do("reserve", NULL, amount_result, &amount);
    if (!reserved.ok) return dwf_fail(reserved.error.name, reserved.error.message);
    dwf_sleep("cool-off", dwf_get_int(&in->payload, "ms", 0));
    dwf_result charged = dwf_step_do(CHARGE_STEP, NULL, amount_result, &amount);
    if (!charged.ok) return dwf_fail(charged.error.name, charged.error.message);
    dwf_event approval;
    dwf_result approved = dwf_wait_for_event("approval", "approval", DWF_DEFAULT, &approval);
    if (!approved.ok) return dwf_fail(approved.error.name, approved.error.message);
#if ORDER_VERSION == 2
    int64_t version = 2;
    dwf_result receipt = dwf_step_do("receipt", NULL, amount_result, &version);
    if (!receipt.ok) return dwf_fail(receipt.error.name, receipt.error.message);
#endif
    dwf_writer w = {0};
    dwf_write_map(&w, 2);
    dwf_write_str(&w, "charged");
    dwf_write_raw(&w, dwf_value_bytes(&charged.value));
    dwf_write_str(&w, "version");
    dwf_write_int(&w, ORDER_VERSION);
    return dwf_output(dwf_writer_bytes(&w));
}

DWF_WORKFLOWS(DWF_WORKFLOW("order", order))
