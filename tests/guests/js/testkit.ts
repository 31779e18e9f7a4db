/**
 * testkit.ts - the C testkit's workflows (tests/guests/testkit.c) in TypeScript,
 * same names, params and outputs, so tests/test_sdk_conformance.py runs one
 * behaviour suite against both SDKs.
 */
import {
  NonRetryableError, WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep,
  type WorkflowStepConfig,
} from "dynamic-workflows";

type Params = Record<string, unknown>;
type Event = WorkflowEvent<Params>;

class Boom extends Error {
  override name = "Boom";
}

class Flaky extends Error {
  override name = "Flaky";
}

export class echo extends WorkflowEntrypoint {
  async run(event: WorkflowEvent<unknown>) {
    return event.payload;
  }
}

export class steps extends WorkflowEntrypoint {
  async run(event: Event, step: WorkflowStep) {
    const count = Number(event.payload.count ?? 1);
    const config: WorkflowStepConfig | undefined = event.payload.unbatched ? { retries: { limit: 5 } } : undefined;
    for (let i = 0; i < count; i++) {
      const result = config
        ? await step.do("step", config, async () => ({ i }))
        : await step.do("step", async () => ({ i }));
      if (result.i !== i) throw new Error("step `step` returned another occurrence's result");
    }
    return { count };
  }
}

export class sleeper extends WorkflowEntrypoint {
  async run(event: Event, step: WorkflowStep) {
    await step.do("before", async () => null);
    await step.sleep("nap", Number(event.payload.ms ?? 0));
    await step.do("after", async () => null);
    return "done";
  }
}

export class sleep_until extends WorkflowEntrypoint {
  async run(event: Event, step: WorkflowStep) {
    await step.sleepUntil("alarm", Number(event.payload.until_ms ?? 0));
    await step.do("after", async () => null);
    return "woke";
  }
}

function timeout(payload: Params): number | undefined {
  return typeof payload.timeout_ms === "number" ? payload.timeout_ms : undefined;
}

export class waiter extends WorkflowEntrypoint {
  async run(event: Event, step: WorkflowStep) {
    const type = String(event.payload.type ?? "ping");
    try {
      const received = await step.waitForEvent("wait", { type, timeout: timeout(event.payload) });
      return received.payload;
    } catch (error) {
      if (!(error instanceof Error) || error.name !== "WaitForEventTimeout") throw error;
      await step.do("timed-out", async () => null);
      return "timeout";
    }
  }
}

export class waiter2 extends WorkflowEntrypoint {
  async run(event: Event, step: WorkflowStep) {
    const type = String(event.payload.type ?? "ping");
    const first = await step.waitForEvent("first", { type, timeout: timeout(event.payload) });
    const second = await step.waitForEvent("second", { type, timeout: timeout(event.payload) });
    return [first.payload, second.payload];
  }
}

export class flaky extends WorkflowEntrypoint {
  async run(event: Event, step: WorkflowStep) {
    const p = event.payload;
    const config: WorkflowStepConfig = {
      retries: {
        limit: p.limit as number | undefined,
        delay: p.delay_ms as number | undefined,
        backoff: p.backoff as "constant" | "linear" | "exponential" | undefined,
      },
      timeout: p.timeout_ms as number | undefined,
    };
    return await step.do("flaky", config, async ({ attempt }) => {
      if (p.non_retryable) throw new NonRetryableError("asked to fail for good", "Fatal");
      if (attempt <= Number(p.fail_attempts ?? 0)) throw new Flaky(`attempt ${attempt} fails`);
      return { attempt };
    });
  }
}

export class caught extends WorkflowEntrypoint {
  async run(_event: Event, step: WorkflowStep) {
    try {
      await step.do("explode", async () => {
        throw new NonRetryableError("this step always fails", "Fatal");
      });
    } catch (error) {
      console.log(`caught ${(error as Error).name}: ${(error as Error).message}`);
      await step.do("recover", async () => null);
      return "recovered";
    }
    throw new Error("step `explode` succeeded");
  }
}

export class fail extends WorkflowEntrypoint {
  async run(): Promise<never> {
    throw new Boom("requested failure");
  }
}

export class spawn extends WorkflowEntrypoint {
  async run(event: Event) {
    const p = event.payload;
    const child = await this.env.WORKFLOWS.create({
      workflow: String(p.workflow ?? ""), id: p.id as string | undefined, params: p.params,
    });
    return { id: child.id };
  }
}

export class notify extends WorkflowEntrypoint {
  async run(event: Event) {
    const p = event.payload;
    const target = await this.env.WORKFLOWS.get(String(p.instance_id ?? ""));
    await target.sendEvent({ type: String(p.type ?? "ping"), payload: p.payload });
    return "sent";
  }
}

export class big extends WorkflowEntrypoint {
  async run(event: Event, step: WorkflowStep) {
    const bytes = Number(event.payload.bytes ?? 0);
    await step.do("big", async () => event.payload.kind === "str"
      ? "x".repeat(bytes) : new Uint8Array(bytes).fill(0x78));
    return { bytes };
  }
}

async function pair(step: WorkflowStep, first: string) {
  await step.do(first, async () => null);
  await step.sleep("pause", 1);
  await step.do("b", async () => null);
  return "done";
}

export class deterministic_pair extends WorkflowEntrypoint {
  async run(_event: Event, step: WorkflowStep) {
    return pair(step, "a");
  }
}

export class renamed_pair extends WorkflowEntrypoint {
  async run(_event: Event, step: WorkflowStep) {
    return pair(step, "x");
  }
}
