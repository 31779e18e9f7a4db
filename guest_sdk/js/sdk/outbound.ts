/**
 * fetch(): outbound HTTP through the host's egress capability (proposal 0003). The
 * host makes the request (allowed hosts only, never a private address, secrets filled
 * in on the way out as `{{secret:NAME}}`), so it works only where the ABI allows
 * `http_fetch`: inside a step body, whose result is what is journaled (a replay never
 * fetches again), and in a fetch handler. A failure the host says retrying cannot help
 * (EgressDenied, PayloadTooLarge...) is thrown as a NonRetryableError of that name, so
 * the step fails for good; the others (EgressTimeout, EgressFailed) are retried per the
 * step's config. HTTP error statuses are responses, not errors.
 */
import type { FetchInit } from "../dynamic-workflows";
import { toMilliseconds } from "./duration";
import { Request, type RequestInit, Response } from "./http";
import { namedError, native } from "./native";
import { context } from "./platform";
import { NonRetryableError } from "./workflow";

interface HostResponse {
  status: number;
  url: string;
  headers: Record<string, string>;
  body: Uint8Array;
}

type Init = RequestInit & Pick<FetchInit, "timeout" | "idempotency">;

export async function fetch(input: string | URL | Request, init: Init = {}): Promise<Response> {
  if (context.mode === null || (context.mode === "workflow" && context.runningStep === null)) {
    throw new Error("fetch() is only available inside a step body (step.do: its result is "
      + "journaled, so a replay never fetches again) or in a fetch handler");
  }
  const request = input instanceof Request && !init.method && !init.headers && init.body === undefined
    ? input : new Request(input instanceof Request ? input.url : String(input), {
      method: init.method ?? (input instanceof Request ? input.method : undefined),
      headers: init.headers ?? (input instanceof Request ? input.headers : undefined),
      body: init.body ?? (input instanceof Request ? await input.bytes() : undefined),
    });
  const outcome = native.httpFetch({
    method: request.method, url: request.url, headers: Object.fromEntries(request.headers),
    body: await request.bytes(),
    ...(init.timeout === undefined ? {} : { timeout_ms: toMilliseconds(init.timeout, "fetch(): timeout") }),
    ...(init.idempotency ? { idempotency: true } : {}),
  });
  if (!outcome.ok) {
    throw outcome.retryable ? namedError(outcome.name, outcome.message)
      : new NonRetryableError(outcome.message, outcome.name);
  }
  const raw = outcome.value as HostResponse;
  return Response.received(raw.status, raw.url, raw.headers, raw.body);
}
