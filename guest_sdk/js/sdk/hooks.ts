/**
 * The module's entry points for the engine (engine.c): `dwf build` bundles an
 * entry that imports the SDK and every tenant source file, then calls
 * install() with their exports. Exported WorkflowEntrypoint subclasses are the
 * workflows (by export name); the default export is the fetch handler.
 */
import type { ExecutionContext, ExportedHandler, WorkflowEvent } from "../dynamic-workflows";
import { env, setRunningWorkflow } from "./binding";
import { Headers, type HostRequest, Request, requestFromHost, Response } from "./http";
import { native } from "./native";
import { fetch } from "./outbound";
import { context, RealDate, resetRandom } from "./platform";
import { describeError } from "./stack";
import { URL, URLSearchParams } from "./url";
import { stallReason, step, WorkflowEntrypoint } from "./workflow";

Object.assign(globalThis, { Headers, Request, Response, URL, URLSearchParams, fetch });

type WorkflowClass = new (ctx: ExecutionContext, e: typeof env) => WorkflowEntrypoint;

const WORKFLOW_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const executionContext: ExecutionContext = Object.freeze({
  waitUntil(promise: Promise<unknown>): void {
    promise.catch(() => undefined); // settles within the invocation: the job queue is drained
  },
});

function isWorkflowClass(value: unknown): value is WorkflowClass {
  return typeof value === "function" && value.prototype instanceof WorkflowEntrypoint;
}

function fail(thrown: unknown): number {
  const { name, message } = describeError(thrown);
  native.setError(name, message);
  return 1;
}

export function install(modules: readonly Record<string, unknown>[]): void {
  const workflows = new Map<string, WorkflowClass>();
  let handler: ExportedHandler | undefined;
  for (const exports of modules) {
    for (const [name, value] of Object.entries(exports)) {
      if (name === "default" && !isWorkflowClass(value)) {
        if (handler && handler !== value) throw new Error("two source files have a default export (a fetch handler): keep one");
        handler = value as ExportedHandler;
      } else if (isWorkflowClass(value)) {
        if (!WORKFLOW_NAME.test(name)) {
          throw new Error(`workflow \`${name}\`: export it under a name of 1-64 characters `
            + "[A-Za-z0-9_-] (export { MyWorkflow as my_workflow })");
        }
        if (workflows.has(name) && workflows.get(name) !== value) {
          throw new Error(`two source files export a workflow named \`${name}\``);
        }
        workflows.set(name, value);
      }
    }
  }

  async function run(workflow: string, payload: unknown, instanceId: string,
                     timestamp: number): Promise<number> {
    context.mode = "workflow";
    context.seedText = instanceId;
    setRunningWorkflow(workflow);
    resetRandom();
    const Workflow = workflows.get(workflow);
    if (!Workflow) {
      native.setError("UnknownWorkflow", `this module has no workflow named \`${workflow}\` `
        + `(it has: ${[...workflows.keys()].join(", ")})`);
      return 1;
    }
    try {
      const event: WorkflowEvent = Object.freeze({
        payload: payload as Readonly<unknown>, timestamp: new RealDate(timestamp), instanceId, workflow,
      });
      const output = await new Workflow(executionContext, env).run(event, step);
      native.setOutput(output);
      return 0;
    } catch (thrown) {
      return fail(thrown);
    }
  }

  async function fetch(raw: HostRequest): Promise<number> {
    context.mode = "fetch";
    context.seedText = raw.request_id;
    resetRandom();
    if (typeof handler?.fetch !== "function") {
      native.setError("NoFetchHandler", "this module's default export has no "
        + "fetch(request, env) method");
      return 1;
    }
    try {
      const response: unknown = await handler.fetch(requestFromHost(raw), env, executionContext);
      if (!(response instanceof Response)) {
        throw new TypeError("the fetch handler must return a Response (or a promise of one)");
      }
      native.setOutput(response.toHost());
      return 0;
    } catch (thrown) {
      return fail(thrown);
    }
  }

  (globalThis as { __dwf_hooks?: unknown }).__dwf_hooks = {
    describe: () => [...workflows.keys()],
    run,
    fetch,
    stalled: () => stallReason(),
  };
}
