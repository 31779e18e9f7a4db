/**
 * memory_bomb.ts - hostile guest (tests/guests/memory_bomb.c in TypeScript):
 * "bomb" {limit} keeps 1 MiB buffers in a step body until memory runs out.
 */
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "dynamic-workflows";

export class bomb extends WorkflowEntrypoint {
  async run(event: WorkflowEvent<{ limit?: number }>, step: WorkflowStep) {
    await step.do("bomb", { retries: { limit: event.payload?.limit ?? 0 } }, async () => {
      const kept: Uint8Array[] = [];
      for (;;) kept.push(new Uint8Array(1 << 20).fill(1));
    });
    return null;
  }
}
