/**
 * The engine's native functions (guest_sdk/js/runtime/natives.c), taken from the
 * global `__dwf` once, before tenant code runs, and removed from it.
 */

/** A durable call's outcome, as the host journaled it. */
export type Outcome =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly name: string; readonly message: string;
      readonly retryable: boolean };

export interface StepFailure {
  readonly name: string;
  readonly message: string;
  readonly retryable: boolean;
}

export interface Native {
  log(level: number, text: string): void;
  setOutput(value: unknown): void;
  setError(name: string, message: string): void;
  /** The attempt to run now (the body, then stepEnd), or the recorded outcome. */
  stepBegin(name: string, limit: number, delayMs: number, backoff: string | null,
            timeoutMs: number): number | Outcome;
  stepEnd(ok: boolean, resultOrError: unknown): Outcome;
  sleep(name: string, ms: number): void;
  sleepUntil(name: string, timestampMs: number): void;
  waitForEvent(name: string, type: string, timeoutMs: number): Outcome;
  createInstance(name: string, workflow: string, params: unknown, id: string | undefined): Outcome;
  sendEvent(name: string, instanceId: string, type: string, payload: unknown): Outcome;
  now(name: string): number;
  random(name: string, bytes: number): Uint8Array;
  /** The latest time the guest learned from the host, not journaled. */
  clock(): number;
  fetchCreate(workflow: string, params: unknown, id: string | undefined): Outcome;
  fetchStatus(id: string): Outcome;
  fetchSendEvent(instanceId: string, type: string, payload: unknown): Outcome;
  /** An outbound request (proposal 0003): the request map in, the response map out. */
  httpFetch(request: unknown): Outcome;
  utf8Encode(text: string): Uint8Array;
  utf8Decode(bytes: Uint8Array): string;
}

const scope = globalThis as unknown as { __dwf?: Native };
if (!scope.__dwf) {
  throw new Error("dynamic-workflows: this code runs only inside the dwf JavaScript engine "
    + "(build it with `dwf build`)");
}
export const native: Native = scope.__dwf;
delete scope.__dwf;

export const LogLevel = { debug: 0, info: 1, warning: 2, error: 3 } as const;

/** An Error named after a host or step failure. */
export function namedError(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

/** The value of a durable call, or its failure thrown as an Error of that name. */
export function settle(outcome: Outcome): unknown {
  if (outcome.ok) return outcome.value;
  throw namedError(outcome.name, outcome.message);
}
