/**
 * dynamic-workflows: the TypeScript guest SDK's public API.
 *
 * Tenant code imports it as "dynamic-workflows" (or, to port code unchanged,
 * as "cloudflare:workers" / "cloudflare:workflows"): the API mirrors
 * Cloudflare Workflows. `dwf build` bundles a tenant with the SDK into a
 * module the host runs in its sandbox; this file is what `tsc` checks tenant
 * code against. See guest_sdk/js/README.md.
 */

/** A duration: milliseconds, or a string such as "10 seconds", "5 minutes", "1 day". */
export type WorkflowDuration = number | `${number} ${WorkflowDurationLabel}` | `${number} ${WorkflowDurationLabel}s`;
export type WorkflowDurationLabel =
  | "millisecond" | "second" | "minute" | "hour" | "day" | "week" | "month" | "year";
export type WorkflowSleepDuration = WorkflowDuration;
export type WorkflowDelayDuration = WorkflowDuration;
export type WorkflowTimeoutDuration = WorkflowDuration;

/** How the wait before retry n grows: constant `delay`, linear `delay * n`, exponential `delay * 2^(n-1)`. */
export type WorkflowBackoff = "constant" | "linear" | "exponential";

/** A step's retries and timeout. Anything left out keeps the host default. */
export interface WorkflowStepConfig {
  retries?: {
    /** Retries after the first attempt (default 5). */
    limit?: number;
    /** Wait before the first retry (default "10 seconds"). */
    delay?: WorkflowDelayDuration;
    /** Default "exponential". */
    backoff?: WorkflowBackoff;
  };
  /** Per attempt (default "10 minutes"). */
  timeout?: WorkflowTimeoutDuration;
}

/** What `run` is started with. The same on every replay. */
export interface WorkflowEvent<T = unknown> {
  /** The instance's params. */
  readonly payload: Readonly<T>;
  /** When the instance was created. */
  readonly timestamp: Date;
  readonly instanceId: string;
  /** The workflow's name (its export name). */
  readonly workflow: string;
}

/** An event received by `step.waitForEvent`. */
export interface WorkflowStepEvent<T = unknown> {
  readonly type: string;
  readonly payload: Readonly<T>;
  readonly timestamp: Date;
}

/** Handed to a step body. */
export interface WorkflowStepContext {
  /** 1 for the first attempt. */
  readonly attempt: number;
}

/**
 * The durable calls of a workflow. Each is journaled: on replay a finished one
 * returns its recorded outcome without running again. Identity is the name and
 * its occurrence, so a workflow must make the same calls in the same order;
 * side effects belong inside step bodies, and durable calls cannot be made
 * from inside a step body.
 */
export interface WorkflowStep {
  /**
   * Runs `callback` and checkpoints its result (JSON-like values, bigints,
   * Uint8Arrays). On replay returns the checkpoint. A thrown error fails the
   * attempt: it is retried per `config`, unless it is a NonRetryableError; the
   * final failure is thrown here, with the error's name and message.
   * The value returned is the checkpointed one (as a replay would see it).
   */
  do<T>(name: string, callback: (ctx: WorkflowStepContext) => Promise<T> | T): Promise<T>;
  do<T>(name: string, config: WorkflowStepConfig,
        callback: (ctx: WorkflowStepContext) => Promise<T> | T): Promise<T>;
  /** A durable sleep: the instance holds no sandbox or memory while it sleeps. */
  sleep(name: string, duration: WorkflowSleepDuration): Promise<void>;
  sleepUntil(name: string, timestamp: Date | number): Promise<void>;
  /**
   * The next event of `type` sent to this instance (events sent earlier are
   * buffered, first in first out). Throws an Error named "WaitForEventTimeout"
   * after `timeout` (default "24 hours").
   */
  waitForEvent<T = unknown>(name: string,
                            options: { type: string; timeout?: WorkflowTimeoutDuration }):
    Promise<WorkflowStepEvent<T>>;
}

/** Fails a step at once: no retries. */
export declare class NonRetryableError extends Error {
  /** `name` defaults to "NonRetryableError". */
  constructor(message: string, name?: string);
}

/** What a workflow or fetch handler is given besides `env`. */
export interface ExecutionContext {
  /** Accepted for compatibility; the promise must settle within the invocation. */
  waitUntil(promise: Promise<unknown>): void;
}

/** An instance's status, as `dwf status` shows it (without its steps). */
export interface InstanceStatus {
  readonly id: string;
  readonly workflow: string;
  readonly status: "queued" | "running" | "paused" | "waiting" | "waitingForPause" | "errored"
    | "terminated" | "complete";
  readonly output: unknown;
  readonly error: { readonly name: string; readonly message: string } | null;
  readonly created_at_ms: number;
  readonly updated_at_ms: number;
  readonly finished_at_ms: number | null;
  readonly wake_at_ms: number | null;
  readonly waiting_event_type: string | null;
}

/** One of this tenant's instances. */
export interface WorkflowInstance {
  readonly id: string;
  /** Fetch handlers only: a workflow reads no status (it would not be journaled). */
  status(): Promise<InstanceStatus>;
  sendEvent(event: { type: string; payload?: unknown }): Promise<void>;
}

export interface WorkflowInstanceCreateOptions<P = unknown> {
  /**
   * Which of this tenant's workflows to start. Inside a workflow it defaults to
   * the running workflow; a fetch handler must name it.
   */
  workflow?: string;
  /** 1-100 chars of [A-Za-z0-9_-]; the host picks one if left out. */
  id?: string;
  params?: P;
}

/**
 * The tenant-bound binding (`env.WORKFLOWS`): it reaches this tenant's
 * workflows and instances only; the host attaches the tenant. Inside a
 * workflow `create` and `sendEvent` are journaled (a replay never repeats
 * them); in a fetch handler they act at once.
 */
export interface Workflows {
  create<P = unknown>(options?: WorkflowInstanceCreateOptions<P>): Promise<WorkflowInstance>;
  /** One by one, in order (not all-or-none). */
  createBatch<P = unknown>(batch: WorkflowInstanceCreateOptions<P>[]): Promise<WorkflowInstance[]>;
  get(id: string): Promise<WorkflowInstance>;
}

/** fetch()'s options: the web's, plus how long to wait and an idempotency key. */
export interface FetchInit extends RequestInit {
  /** Default: the tenant's egress timeout (30 s); never more than the step has left. */
  timeout?: WorkflowDuration;
  /** The host adds an Idempotency-Key header, the same when a crashed step runs again. */
  idempotency?: boolean;
}

/** What the host gives a tenant as `env`. */
export interface Env {
  readonly WORKFLOWS: Workflows;
}

/**
 * A workflow: export the class and the host knows it by its export name
 * (`export { Onboarding as onboarding }` names it "onboarding").
 */
export declare abstract class WorkflowEntrypoint<E = Env, T = unknown> {
  protected readonly ctx: ExecutionContext;
  protected readonly env: E & Env;
  constructor(ctx: ExecutionContext, env: E & Env);
  /** The instance's output is what this returns; a throw fails the instance. */
  abstract run(event: Readonly<WorkflowEvent<T>>, step: WorkflowStep): Promise<unknown>;
}

/** The module's default export: its front door (`dwf serve`, `x-tenant-id`). */
export interface ExportedHandler<E = Env> {
  fetch?(request: Request, env: E & Env, ctx: ExecutionContext): Response | Promise<Response>;
}

/* ------------------------------------------------------------------------ */
/* Globals of the sandbox: a small part of the web platform.                */
/* ------------------------------------------------------------------------ */

type HeadersInit = Headers | Record<string, string> | [string, string][];
type BodyInit = string | Uint8Array | ArrayBuffer | null;

declare global {
  /**
   * Goes to the host's log, tagged with the tenant, instance and running step.
   * Not journaled: a replay logs again.
   */
  const console: {
    log(...data: unknown[]): void;
    info(...data: unknown[]): void;
    debug(...data: unknown[]): void;
    warn(...data: unknown[]): void;
    error(...data: unknown[]): void;
  };

  class Headers implements Iterable<[string, string]> {
    constructor(init?: HeadersInit);
    get(name: string): string | null;
    has(name: string): boolean;
    set(name: string, value: string): void;
    append(name: string, value: string): void;
    delete(name: string): void;
    forEach(callback: (value: string, name: string, headers: Headers) => void): void;
    entries(): IterableIterator<[string, string]>;
    keys(): IterableIterator<string>;
    values(): IterableIterator<string>;
    [Symbol.iterator](): IterableIterator<[string, string]>;
  }

  /** What Request and Response share: the body, read once as text, JSON or bytes. */
  interface Body {
    text(): Promise<string>;
    json<T = unknown>(): Promise<T>;
    arrayBuffer(): Promise<ArrayBuffer>;
    bytes(): Promise<Uint8Array>;
  }

  interface RequestInit {
    method?: string;
    headers?: HeadersInit;
    body?: BodyInit;
  }

  interface Request extends Body {}
  class Request {
    constructor(url: string, init?: RequestInit);
    readonly method: string;
    /** Absolute: "http://<host header><path>?<query>". */
    readonly url: string;
    readonly headers: Headers;
  }

  interface ResponseInit {
    status?: number;
    statusText?: string;
    headers?: HeadersInit;
  }

  interface Response extends Body {}
  class Response {
    constructor(body?: BodyInit, init?: ResponseInit);
    static json(data: unknown, init?: ResponseInit): Response;
    static redirect(url: string, status?: number): Response;
    readonly status: number;
    readonly ok: boolean;
    readonly headers: Headers;
    /** Where a fetch() response came from (after redirects); "" otherwise. */
    readonly url: string;
  }

  class URLSearchParams implements Iterable<[string, string]> {
    constructor(init?: string | Record<string, string> | [string, string][]);
    get(name: string): string | null;
    getAll(name: string): string[];
    has(name: string): boolean;
    set(name: string, value: string): void;
    append(name: string, value: string): void;
    delete(name: string): void;
    entries(): IterableIterator<[string, string]>;
    [Symbol.iterator](): IterableIterator<[string, string]>;
    toString(): string;
  }

  class URL {
    constructor(url: string, base?: string);
    readonly href: string;
    readonly protocol: string;
    readonly host: string;
    readonly hostname: string;
    readonly port: string;
    readonly origin: string;
    readonly pathname: string;
    readonly search: string;
    readonly hash: string;
    readonly searchParams: URLSearchParams;
    toString(): string;
  }

  /**
   * Outbound HTTP through the host (proposal 0003): only inside a step body (the step's
   * result is journaled, so a replay never fetches again) and in a fetch handler; the
   * tenant's egress rules decide what it may reach. `{{secret:NAME}}` in a header or the
   * body is filled in by the host. A failure retrying cannot help is a NonRetryableError
   * named EgressDenied or PayloadTooLarge; EgressTimeout and EgressFailed are retried per
   * the step's config. HTTP error statuses are responses.
   */
  function fetch(input: string | URL | Request, init?: FetchInit): Promise<Response>;

  class TextEncoder {
    readonly encoding: "utf-8";
    encode(input?: string): Uint8Array;
  }

  class TextDecoder {
    readonly encoding: "utf-8";
    decode(input?: Uint8Array | ArrayBuffer): string;
  }
}
