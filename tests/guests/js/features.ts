/**
 * features.ts - what the TypeScript SDK adds of its own (tests/test_sdk_ts.py):
 * journaled Date/Math.random, durations as strings, concurrent steps, stack
 * traces in .ts lines, value conversion, Cloudflare's module names, a fetch
 * handler on Request/Response/URL.
 */
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import { NonRetryableError } from "cloudflare:workflows";
import type { Env, ExportedHandler } from "dynamic-workflows";

/** Date.now(), new Date() and Math.random() outside steps, a sleep, then the same again. */
export class clock extends WorkflowEntrypoint {
  async run(_event: WorkflowEvent<unknown>, step: WorkflowStep) {
    const before = { now: Date.now(), date: new Date().getTime(), random: Math.random() };
    const inStep = await step.do("inside", async () => ({ now: Date.now(), random: Math.random() }));
    await step.sleep("rest", "1 second");
    return { before, inStep, after: { now: Date.now(), random: Math.random() } };
  }
}

/** retries.delay and the sleep as strings: "2 seconds", "1 minute". */
export class durations extends WorkflowEntrypoint {
  async run(_event: WorkflowEvent<unknown>, step: WorkflowStep) {
    const attempt = await step.do("flaky", { retries: { limit: 2, delay: "2 seconds", backoff: "linear" },
                                            timeout: "1 minute" },
                                  async ({ attempt }) => {
      if (attempt < 3) throw new Error(`attempt ${attempt}`);
      return attempt;
    });
    await step.sleep("nap", "1 minute");
    return attempt;
  }
}

/** Steps started together journal in the order they were called. */
export class parallel extends WorkflowEntrypoint {
  async run(_event: WorkflowEvent<unknown>, step: WorkflowStep) {
    return Promise.all(["a", "b", "c"].map((name) => step.do(name, async () => name.toUpperCase())));
  }
}

/** A durable call inside a step body: refused, with the reason. */
export class nested extends WorkflowEntrypoint {
  async run(_event: WorkflowEvent<unknown>, step: WorkflowStep) {
    return step.do("outer", async () => step.do("inner", async () => 1));
  }
}

function explode(): never {
  throw new TypeError("the widget is broken"); // THROW-LINE
}

/** An uncaught error thrown two calls deep. */
export class thrower extends WorkflowEntrypoint {
  async run() {
    explode();
  }
}

/** A step that fails for good with a NonRetryableError of its own name. */
export class fatal extends WorkflowEntrypoint {
  async run(_event: WorkflowEvent<unknown>, step: WorkflowStep) {
    return step.do("charge", async () => {
      throw new NonRetryableError("card declined", "PaymentDeclined");
    });
  }
}

/** Values as a step journals them and hands them back. */
export class values extends WorkflowEntrypoint {
  async run(_event: WorkflowEvent<unknown>, step: WorkflowStep) {
    const result = await step.do("values", async () => ({
      int: 42, float: 1.5, big: 2n ** 60n, bytes: new Uint8Array([1, 2, 3]), text: "héllo",
      date: new Date(0), skipped: undefined, list: [1, undefined, "x"],
      map: new Map([["k", 1]]), nested: { deep: [true, null] },
    }));
    return { result, types: { big: typeof result.big, bytes: result.bytes instanceof Uint8Array } };
  }
}

/** A step whose result cannot be journaled. */
export class unjournaled extends WorkflowEntrypoint {
  async run(_event: WorkflowEvent<unknown>, step: WorkflowStep) {
    return step.do("callback", async () => ({ ok: true, later: () => 1 }).later);
  }
}

/** A workflow that waits on a promise nothing can settle. */
export class stuck extends WorkflowEntrypoint {
  async run() {
    await new Promise(() => undefined);
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/echo") {
      return Response.json({
        method: request.method, path: url.pathname, q: url.searchParams.get("q"),
        header: request.headers.get("X-Thing"), body: await request.text(), now: Date.now(),
      }, { status: 201, headers: { "x-handled-by": "features" } });
    }
    if (url.pathname === "/start") {
      const instance = await env.WORKFLOWS.create({ workflow: "parallel", id: url.searchParams.get("id") ?? undefined });
      return Response.json({ id: instance.id, status: (await instance.status()).status });
    }
    if (url.pathname === "/throw") throw new RangeError("no such thing");
    return new Response("not found", { status: 404 });
  },
} satisfies ExportedHandler;
