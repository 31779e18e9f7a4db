/*
 * acme: SaaS onboarding.
 *
 * Workflow "onboarding", params:
 *   {email: str, nudge_after_ms: int (2000), approval_timeout_ms: int (86400000)}
 * Creates the account, welcomes the user, nudges them after a delay, then
 * waits for a manager's "approval" event: approved -> activate, otherwise
 * close; no answer in time -> escalate to an admin.
 * Output: {account_id, approved: bool|nil, outcome: "activated"|"closed"|"escalated"}.
 *
 * The step bodies stand in for real side effects (an accounts API, an email
 * provider); they log and return what such a call would.
 */
#include "dwf.h"

typedef struct {
    const char *email;
    const char *account_id;
} onboarding;

/* ---- step bodies (side effects live here) ------------------------------- */

/* FNV-1a: the same email always maps to the same account id, on every retry. */
static uint32_t fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static bool create_account(dwf_step *step, void *ctx) {
    const onboarding *ob = ctx;
    static const char hex[] = "0123456789abcdef";
    char id[5 + 8 + 1] = "acct-";
    uint32_t h = fnv1a(ob->email);
    for (int i = 0; i < 8; i++) id[5 + i] = hex[(h >> (28 - 4 * i)) & 0xf];
    id[13] = 0;

    dwf_log(DWF_LOG_INFO, dwf_cat("accounts: created ", id, " for ", ob->email, NULL));
    dwf_write_map(&step->result, 1);
    dwf_write_str(&step->result, "account_id");
    dwf_write_str(&step->result, id);
    return true;
}

/* Both emails have the same shape: {sent_to: email}. */
static bool send_email(dwf_step *step, void *ctx) {
    const onboarding *ob = ctx;
    dwf_log(DWF_LOG_INFO, dwf_cat("mail: ", step->name, " to ", ob->email, NULL));
    dwf_write_map(&step->result, 1);
    dwf_write_str(&step->result, "sent_to");
    dwf_write_str(&step->result, ob->email);
    return true;
}

/* activate-account / close-account / escalate-to-admin: {account_id, action}. */
static bool account_action(dwf_step *step, void *ctx) {
    const onboarding *ob = ctx;
    dwf_log(DWF_LOG_INFO, dwf_cat("accounts: ", step->name, " for ", ob->account_id, NULL));
    dwf_write_map(&step->result, 2);
    dwf_write_str(&step->result, "account_id");
    dwf_write_str(&step->result, ob->account_id);
    dwf_write_str(&step->result, "action");
    dwf_write_str(&step->result, step->name);
    return true;
}

/* ---- the workflow -------------------------------------------------------- */

static int output(const onboarding *ob, int approved /* -1 = nil */, const char *outcome) {
    dwf_writer w = {0};
    dwf_write_map(&w, 3);
    dwf_write_str(&w, "account_id");
    dwf_write_str(&w, ob->account_id);
    dwf_write_str(&w, "approved");
    if (approved < 0) dwf_write_nil(&w);
    else dwf_write_bool(&w, approved);
    dwf_write_str(&w, "outcome");
    dwf_write_str(&w, outcome);
    dwf_log(DWF_LOG_INFO, dwf_cat("onboarding ", ob->email, ": ", outcome, NULL));
    return dwf_output(dwf_writer_bytes(&w));
}

/* Runs a step and fails the workflow with its error if it fails for good. */
static bool step(const char *name, dwf_step_fn body, onboarding *ob, dwf_result *out) {
    *out = dwf_step_do(name, NULL, body, ob);
    if (!out->ok) dwf_fail(out->error.name, out->error.message);
    return out->ok;
}

static int onboarding_run(const dwf_input *in) {
    char num[DWF_ITOA_SIZE];
    onboarding ob = {.email = dwf_get_str(&in->payload, "email", NULL)};
    if (!ob.email || !*ob.email) return dwf_fail("InvalidParams", "`email` (a string) is required");
    int64_t nudge_after_ms = dwf_get_int(&in->payload, "nudge_after_ms", 2000);
    int64_t approval_timeout_ms = dwf_get_int(&in->payload, "approval_timeout_ms", 86400000);
    dwf_result r;

    dwf_log(DWF_LOG_INFO, dwf_cat("onboarding ", ob.email, ": creating the account", NULL));
    if (!step("create-account", create_account, &ob, &r)) return DWF_FAILED;
    ob.account_id = dwf_get_str(&r.value, "account_id", "");

    dwf_log(DWF_LOG_INFO, dwf_cat("onboarding ", ob.email, ": welcoming ", ob.account_id, NULL));
    if (!step("send-welcome-email", send_email, &ob, &r)) return DWF_FAILED;

    dwf_log(DWF_LOG_INFO, dwf_cat("onboarding ", ob.email, ": nudging in ",
                                  dwf_itoa(nudge_after_ms, num), " ms", NULL));
    dwf_sleep("nudge-delay", nudge_after_ms);
    if (!step("send-nudge-email", send_email, &ob, &r)) return DWF_FAILED;

    dwf_log(DWF_LOG_INFO, dwf_cat("onboarding ", ob.email, ": waiting for manager approval", NULL));
    dwf_event approval;
    dwf_result wait = dwf_wait_for_event("manager-approval", "approval", approval_timeout_ms,
                                         &approval);
    if (!wait.ok) {
        if (!dwf_streq(wait.error.name, "WaitForEventTimeout"))
            return dwf_fail(wait.error.name, wait.error.message);
        dwf_log(DWF_LOG_WARNING, dwf_cat("onboarding ", ob.email, ": no answer, escalating", NULL));
        if (!step("escalate-to-admin", account_action, &ob, &r)) return DWF_FAILED;
        return output(&ob, -1, "escalated");
    }

    /* Only an explicit `approved: true` activates; anything else is a rejection. */
    if (dwf_get_bool(&approval.payload, "approved", false)) {
        if (!step("activate-account", account_action, &ob, &r)) return DWF_FAILED;
        return output(&ob, 1, "activated");
    }
    if (!step("close-account", account_action, &ob, &r)) return DWF_FAILED;
    return output(&ob, 0, "closed");
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("onboarding", onboarding_run),
)
