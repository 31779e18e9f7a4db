/**
 * benchkit.ts - the benchmark workloads of bench/guests/benchkit.c, written with the
 * TypeScript SDK: `make bench` runs the same 10-step workflow in both.
 */
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "dynamic-workflows";

async function runSteps(step: WorkflowStep, count: number): Promise<number> {
  let sum = 0;
  for (let i = 0; i < count; i++) sum += (await step.do("step", async () => ({ i }))).i;
  return sum;
}

export class steps extends WorkflowEntrypoint {
  async run(event: WorkflowEvent<{ count?: number }>, step: WorkflowStep) {
    return { sum: await runSteps(step, event.payload?.count ?? 10) };
  }
}

export class noop extends WorkflowEntrypoint {
  async run() {
    return { sum: 0 };
  }
}
