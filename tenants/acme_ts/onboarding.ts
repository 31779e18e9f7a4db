/**
 * acme_ts: the acme onboarding (tenants/acme/onboarding.c) written in TypeScript.
 * Same workflow, params, steps and output, so both journal the same instance
 * identically (tests/test_sdk_tenants.py checks it against the C tenant).
 *
 * Workflow "onboarding", params:
 *   {email: string, nudge_after_ms: int (2000), approval_timeout_ms: int (86400000)}
 * Creates the account, welcomes the user, nudges them after a delay, then waits
 * for a manager's "approval" event: approved -> activate, otherwise close; no
 * answer in time -> escalate to an admin.
 * Output: {account_id, approved: boolean | null, outcome: "activated" | "closed" | "escalated"}.
 *
 * The step bodies stand in for real side effects (an accounts API, an email
 * provider); they log and return what such a call would.
 */
import {
  NonRetryableError, WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep,
} from "dynamic-workflows";

export interface OnboardingParams {
  email?: string;
  nudge_after_ms?: number;
  approval_timeout_ms?: number;
}

/** FNV-1a: the same email always maps to the same account id, on every retry. */
function accountIdFor(email: string): string {
  let hash = 2166136261;
  for (const byte of new TextEncoder().encode(email)) hash = Math.imul(hash ^ byte, 16777619) >>> 0;
  return `acct-${hash.toString(16).padStart(8, "0")}`;
}

function integer(value: unknown, fallback: number): number {
  return typeof value === "number" && Number.isInteger(value) ? value : fallback;
}

class Onboarding extends WorkflowEntrypoint<unknown, OnboardingParams> {
  async run(event: WorkflowEvent<OnboardingParams>, step: WorkflowStep) {
    const email = event.payload?.email;
    if (typeof email !== "string" || !email) {
      throw new NonRetryableError("`email` (a string) is required", "InvalidParams");
    }
    const nudgeAfterMs = integer(event.payload.nudge_after_ms, 2000);
    const approvalTimeoutMs = integer(event.payload.approval_timeout_ms, 86_400_000);

    console.log(`onboarding ${email}: creating the account`);
    const { account_id: accountId } = await step.do("create-account", async () => {
      const id = accountIdFor(email);
      console.log(`accounts: created ${id} for ${email}`);
      return { account_id: id };
    });

    const sendEmail = (name: string) => step.do(name, async () => {
      console.log(`mail: ${name} to ${email}`);
      return { sent_to: email };
    });
    const accountAction = (name: string) => step.do(name, async () => {
      console.log(`accounts: ${name} for ${accountId}`);
      return { account_id: accountId, action: name };
    });
    const finish = (approved: boolean | null, outcome: string) => {
      console.log(`onboarding ${email}: ${outcome}`);
      return { account_id: accountId, approved, outcome };
    };

    console.log(`onboarding ${email}: welcoming ${accountId}`);
    await sendEmail("send-welcome-email");

    console.log(`onboarding ${email}: nudging in ${nudgeAfterMs} ms`);
    await step.sleep("nudge-delay", nudgeAfterMs);
    await sendEmail("send-nudge-email");

    console.log(`onboarding ${email}: waiting for manager approval`);
    let approval;
    try {
      approval = await step.waitForEvent<{ approved?: unknown }>("manager-approval",
        { type: "approval", timeout: approvalTimeoutMs });
    } catch (error) {
      if (!(error instanceof Error) || error.name !== "WaitForEventTimeout") throw error;
      console.warn(`onboarding ${email}: no answer, escalating`);
      await accountAction("escalate-to-admin");
      return finish(null, "escalated");
    }
    // Only an explicit `approved: true` activates; anything else is a rejection.
    if (approval.payload?.approved === true) {
      await accountAction("activate-account");
      return finish(true, "activated");
    }
    await accountAction("close-account");
    return finish(false, "closed");
  }
}

export { Onboarding as onboarding };
