/**
 * `env.WORKFLOWS`: the tenant-bound binding. The host attaches the tenant, so
 * it reaches this tenant's workflows and instances only. Inside a workflow,
 * `create` and `sendEvent` are journaled calls (named after the workflow and
 * the event type), so a replay never creates or sends twice; in a fetch
 * handler they act at once through the fetch binding.
 */
import type {
  Env, InstanceStatus, WorkflowInstance, WorkflowInstanceCreateOptions, Workflows,
} from "../dynamic-workflows";
import { native, settle } from "./native";
import { context } from "./platform";
import { exclusive } from "./workflow";

/** The workflow running now (the default for `create` inside a workflow). */
let runningWorkflow: string | null = null;

export function setRunningWorkflow(name: string | null): void {
  runningWorkflow = name;
}

function inWorkflow(): boolean {
  if (context.mode === null) {
    throw new Error("env.WORKFLOWS is not available while the module loads: use it in run() or fetch()");
  }
  return context.mode === "workflow";
}

class Instance implements WorkflowInstance {
  constructor(readonly id: string) {}

  async status(): Promise<InstanceStatus> {
    if (inWorkflow()) {
      throw new Error("instance.status() is only available in a fetch handler: a workflow "
        + "reads no status (it would not be journaled); have the instance send an event instead");
    }
    return settle(native.fetchStatus(this.id)) as InstanceStatus;
  }

  async sendEvent(event: { type: string; payload?: unknown }): Promise<void> {
    const type = event?.type;
    if (typeof type !== "string" || !type) {
      throw new TypeError("sendEvent: `type` must be a non-empty string");
    }
    const payload = event.payload ?? null;
    if (inWorkflow()) {
      await exclusive(() => settle(native.sendEvent(type, this.id, type, payload)));
    } else {
      settle(native.fetchSendEvent(this.id, type, payload));
    }
  }
}

async function create<P>(options: WorkflowInstanceCreateOptions<P> = {}): Promise<WorkflowInstance> {
  const workflowMode = inWorkflow();
  const workflow = options.workflow ?? (workflowMode ? runningWorkflow : null);
  if (typeof workflow !== "string" || !workflow) {
    throw new TypeError("env.WORKFLOWS.create: name the `workflow` to start (a fetch handler "
      + "has no workflow of its own)");
  }
  const params = options.params ?? null;
  const outcome = workflowMode
    ? await exclusive(() => native.createInstance(workflow, workflow, params, options.id))
    : native.fetchCreate(workflow, params, options.id);
  return new Instance((settle(outcome) as { id: string }).id);
}

export const workflows: Workflows = {
  create,
  async createBatch<P>(batch: WorkflowInstanceCreateOptions<P>[]): Promise<WorkflowInstance[]> {
    const created: WorkflowInstance[] = [];
    for (const options of batch) created.push(await create(options));
    return created;
  },
  async get(id: string): Promise<WorkflowInstance> {
    if (typeof id !== "string" || !id) throw new TypeError("env.WORKFLOWS.get: an instance id");
    return new Instance(id);
  },
};

export const env: Env = Object.freeze({ WORKFLOWS: workflows });
