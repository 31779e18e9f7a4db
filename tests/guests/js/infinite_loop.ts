/**
 * infinite_loop.ts - hostile guest (tests/guests/infinite_loop.c in TypeScript):
 * "spin" {limit, delay_ms, timeout_ms} loops forever in a step body; "spin_outside"
 * loops forever outside any step.
 */
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "dynamic-workflows";

function spinForever(): never {
  let n = 0;
  for (;;) n++;
}

export class spin extends WorkflowEntrypoint {
  async run(event: WorkflowEvent<{ limit?: number; delay_ms?: number; timeout_ms?: number }>,
            step: WorkflowStep) {
    const p = event.payload;
    await step.do("spin", { retries: { limit: p.limit ?? 0, delay: p.delay_ms }, timeout: p.timeout_ms },
                  async () => spinForever());
    return null;
  }
}

export class spin_outside extends WorkflowEntrypoint {
  async run(): Promise<never> {
    spinForever();
  }
}
