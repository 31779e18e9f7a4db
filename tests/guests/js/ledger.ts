/**
 * ledger.ts - the crash test's workload (tests/guests/ledger.c) in TypeScript:
 * every step body logs "ledger-run <i>", and a durable sleep follows each step.
 */
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "dynamic-workflows";

export class ledger extends WorkflowEntrypoint {
  async run(event: WorkflowEvent<{ steps?: number; gap_ms?: number }>, step: WorkflowStep) {
    const steps = event.payload.steps ?? 5;
    const gapMs = event.payload.gap_ms ?? 10;
    let sum = 0;
    for (let i = 0; i < steps; i++) {
      const done = await step.do("work", async () => {
        console.log(`ledger-run ${i}`);
        return { i };
      });
      sum += done.i;
      await step.sleep("gap", gapMs);
    }
    return { steps, sum };
  }
}
