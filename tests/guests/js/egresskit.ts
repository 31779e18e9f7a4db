/**
 * egresskit.ts - outbound HTTP with fetch() (proposal 0003), the C egresskit
 * (tests/guests/egresskit.c) in TypeScript: same workflows, params and outputs.
 *
 * "call" {url, method, body, auth, idempotency, timeout_ms, calls, retries, delay_ms,
 * nap_ms, step_timeout_ms}: step "call" makes the requests, then an optional sleep and a
 * step "after"; output {status, body, calls}. "outside": fetch() between steps (refused).
 * Fetch handler: POST {url} fetches it and answers with its status and body.
 */
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "dynamic-workflows";
import type { ExportedHandler } from "dynamic-workflows";

interface CallParams {
  url: string;
  method?: string;
  body?: string;
  auth?: string;
  idempotency?: boolean;
  timeout_ms?: number;
  calls?: number;
  retries?: number;
  delay_ms?: number;
  nap_ms?: number;
  step_timeout_ms?: number;
}

function fetchOnce(p: CallParams): Promise<Response> {
  return fetch(p.url, {
    method: p.method ?? "GET", body: p.body, headers: p.auth ? { authorization: p.auth } : {},
    timeout: p.timeout_ms, idempotency: p.idempotency,
  });
}

export class call extends WorkflowEntrypoint {
  async run(event: WorkflowEvent<CallParams>, step: WorkflowStep) {
    const p = event.payload;
    const result = await step.do("call", {
      retries: { limit: p.retries ?? 0, delay: p.delay_ms ?? 10, backoff: "constant" },
      timeout: p.step_timeout_ms,
    }, async () => {
      const calls = p.calls ?? 1;
      let response: Response | undefined;
      for (let i = 0; i < calls; i++) response = await fetchOnce(p);
      return { status: response?.status, body: await response?.text(), calls };
    });
    if (p.nap_ms) await step.sleep("nap", p.nap_ms);
    await step.do("after", async () => "after");
    return result;
  }
}

export class outside extends WorkflowEntrypoint {
  async run(event: WorkflowEvent<CallParams>) {
    await fetchOnce(event.payload);
    return null;
  }
}

export default {
  async fetch(request) {
    const { url } = await request.json<{ url: string }>();
    try {
      const got = await fetchOnce({ url });
      return new Response(await got.bytes(), { status: got.status });
    } catch (error) {
      return new Response(`${(error as Error).name}: ${(error as Error).message}`, { status: 502 });
    }
  },
} satisfies ExportedHandler;
