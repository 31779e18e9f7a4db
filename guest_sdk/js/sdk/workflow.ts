/**
 * Workflows: WorkflowEntrypoint, the `step` object and NonRetryableError, on
 * the engine's durable calls (natives.c, which drive the C SDK's journal code:
 * step batches and replay from the event included).
 *
 * Every durable call is synchronous underneath: the host answers it, or
 * suspends the invocation (a trap; the instance is run again from the start
 * later, and finished calls answer from the journal). Calls are taken one at a
 * time in the order they are made, so `Promise.all([step.do(a), step.do(b)])`
 * journals a then b, deterministically.
 */
import type {
  Env, ExecutionContext, WorkflowDuration, WorkflowEvent, WorkflowStep, WorkflowStepConfig,
  WorkflowStepContext, WorkflowStepEvent,
} from "../dynamic-workflows";
import { toMilliseconds } from "./duration";
import { native, type Outcome, settle, type StepFailure } from "./native";
import { context, RealDate } from "./platform";

export class NonRetryableError extends Error {
  constructor(message: string, name = "NonRetryableError") {
    super(message);
    this.name = name;
  }
}

export abstract class WorkflowEntrypoint<E = Env, T = unknown> {
  protected readonly ctx: ExecutionContext;
  protected readonly env: E & Env;

  constructor(ctx: ExecutionContext, env: E & Env) {
    this.ctx = ctx;
    this.env = env;
  }

  abstract run(event: Readonly<WorkflowEvent<T>>, step: WorkflowStep): Promise<unknown>;
}

/* ---- one durable call at a time ---------------------------------------------- */

let busy = false;
const waiting: (() => void)[] = [];

/** Runs `call` when every durable call made before it has finished. */
export async function exclusive<T>(call: () => T | Promise<T>): Promise<T> {
  if (busy) await new Promise<void>((resolve) => waiting.push(resolve));
  busy = true;
  try {
    return await call();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else busy = false;
  }
}

/** Why an invocation stalled with promises pending, when the SDK can tell. */
export function stallReason(): string | null {
  if (context.runningStep !== null && waiting.length) {
    return `the body of step "${context.runningStep}" waits for a durable call (step.do, `
      + "step.sleep, step.waitForEvent, env.WORKFLOWS) that waits for the step to finish: "
      + "durable calls cannot nest in a step body; make them after the step";
  }
  return null;
}

/* ---- step ---------------------------------------------------------------------- */

const DEFAULT = -1;

function checkName(name: unknown, call: string): string {
  if (typeof name !== "string" || name.length === 0) {
    throw new TypeError(`${call}: the name must be a non-empty string, not ${JSON.stringify(name)}`);
  }
  return name;
}

interface NativeConfig {
  limit: number;
  delayMs: number;
  backoff: string | null;
  timeoutMs: number;
}

const DEFAULT_CONFIG: NativeConfig = { limit: DEFAULT, delayMs: DEFAULT, backoff: null, timeoutMs: DEFAULT };

function nativeConfig(name: string, config: WorkflowStepConfig | undefined): NativeConfig {
  if (config === undefined) return DEFAULT_CONFIG;
  const retries = config.retries ?? {};
  const limit = retries.limit ?? DEFAULT;
  if (limit !== DEFAULT && (!Number.isInteger(limit) || limit < 0)) {
    throw new TypeError(`step "${name}": retries.limit must be an integer >= 0, not ${limit}`);
  }
  const backoff = retries.backoff ?? null;
  if (backoff !== null && !["constant", "linear", "exponential"].includes(backoff)) {
    throw new TypeError(`step "${name}": retries.backoff must be "constant", "linear" or `
      + `"exponential", not ${JSON.stringify(backoff)}`);
  }
  const duration = (value: WorkflowDuration | undefined, what: string) =>
    value === undefined ? DEFAULT : toMilliseconds(value, `step "${name}": ${what}`);
  const timeoutMs = duration(config.timeout, "timeout");
  if (timeoutMs === 0) throw new TypeError(`step "${name}": timeout must be more than 0`);
  return { limit, delayMs: duration(retries.delay, "retries.delay"), backoff, timeoutMs };
}

/** What a step body threw, as the host records it. */
function failure(thrown: unknown): StepFailure {
  if (thrown instanceof Error) {
    return { name: thrown.name || "Error", message: thrown.message,
             retryable: !(thrown instanceof NonRetryableError) };
  }
  return { name: "Error", message: `a non-Error value was thrown: ${String(thrown)}`, retryable: true };
}

async function runBody<T>(name: string, attempt: number,
                          body: (ctx: WorkflowStepContext) => Promise<T> | T): Promise<Outcome> {
  context.runningStep = name;
  let ok = true;
  let result: unknown;
  try {
    result = await body({ attempt });
  } catch (thrown) {
    ok = false;
    result = failure(thrown);
  } finally {
    context.runningStep = null;
  }
  return native.stepEnd(ok, result);
}

function workflowOnly(call: string): void {
  if (context.mode !== "workflow") {
    throw new Error(`${call} is only available inside a workflow's run()`);
  }
}

export const step: WorkflowStep = {
  do<T>(name: string, configOrBody: WorkflowStepConfig | ((ctx: WorkflowStepContext) => Promise<T> | T),
        maybeBody?: (ctx: WorkflowStepContext) => Promise<T> | T): Promise<T> {
    workflowOnly("step.do");
    checkName(name, "step.do");
    const body = typeof configOrBody === "function" ? configOrBody : maybeBody;
    if (typeof body !== "function") {
      throw new TypeError(`step.do("${name}"): the last argument must be the step's function`);
    }
    const config = nativeConfig(name, typeof configOrBody === "function" ? undefined : configOrBody);
    return exclusive(async () => {
      const begun = native.stepBegin(name, config.limit, config.delayMs, config.backoff,
                                     config.timeoutMs);
      const outcome = typeof begun === "number" ? await runBody(name, begun, body) : begun;
      return settle(outcome) as T;
    });
  },

  sleep(name: string, duration: WorkflowDuration): Promise<void> {
    workflowOnly("step.sleep");
    checkName(name, "step.sleep");
    const ms = toMilliseconds(duration, `step.sleep("${name}")`);
    return exclusive(() => native.sleep(name, ms));
  },

  sleepUntil(name: string, timestamp: Date | number): Promise<void> {
    workflowOnly("step.sleepUntil");
    checkName(name, "step.sleepUntil");
    const ms = timestamp instanceof RealDate ? timestamp.getTime() : Number(timestamp);
    if (!Number.isFinite(ms)) {
      throw new TypeError(`step.sleepUntil("${name}"): a Date or ms since the epoch, not ${String(timestamp)}`);
    }
    return exclusive(() => native.sleepUntil(name, ms));
  },

  waitForEvent<T = unknown>(name: string, options: { type: string; timeout?: WorkflowDuration }):
      Promise<WorkflowStepEvent<T>> {
    workflowOnly("step.waitForEvent");
    checkName(name, "step.waitForEvent");
    const type = options?.type;
    if (typeof type !== "string" || !type) {
      throw new TypeError(`step.waitForEvent("${name}"): options.type must be a non-empty string`);
    }
    const timeoutMs = options.timeout === undefined ? DEFAULT
      : toMilliseconds(options.timeout, `step.waitForEvent("${name}"): timeout`);
    return exclusive(() => {
      const event = settle(native.waitForEvent(name, type, timeoutMs)) as
        { type: string; payload: T; timestamp: number };
      return { type: event.type, payload: event.payload, timestamp: new RealDate(event.timestamp) };
    });
  },
};
