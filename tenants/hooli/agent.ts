/**
 * hooli: an AI agent whose tool calls need a human's approval.
 *
 * Workflow "agent", params {goal: string, plan?: ToolCall[]}:
 *   1. step "plan": turns the goal into tool calls (a stand-in for an LLM call; a
 *      `plan` param is taken as given);
 *   2. for each call, waits for an "approval" event from a human ({approved: bool},
 *      timeout `approval_timeout` or 1 day); a rejected call is skipped, an
 *      unanswered one ends the run;
 *   3. runs each approved call as a child "tool_call" instance (its own retries and
 *      journal) and waits for its "tool_result" event;
 *   4. step "summarize" over the results.
 * Output: {goal, results: [{tool, status: "done" | "rejected", output?}], summary, outcome}.
 *
 * Workflow "tool_call", params {parent_id, index, tool, input, fail_attempts?}: runs
 * the tool in a step with retries (tools are flaky: `fail_attempts` makes the first
 * attempts fail), then sends the parent a "tool_result" event {index, tool, output}.
 *
 * The tools are stand-ins for real ones (a search API, a document store, a mailer):
 * deterministic functions of their input.
 */
import {
  NonRetryableError, type WorkflowDuration, WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep,
  type WorkflowStepConfig,
} from "dynamic-workflows";

export interface ToolCall {
  tool: "web_search" | "read_page" | "summarize" | "draft_email";
  input: string;
}

export interface AgentParams {
  goal: string;
  plan?: ToolCall[];
  approval_timeout?: WorkflowDuration;
  fail_attempts?: number;
}

interface ToolResult {
  index: number;
  tool: string;
  output: unknown;
}

const MAX_CALLS = 20;
const TOOL_RETRIES: WorkflowStepConfig = {
  retries: { limit: 3, delay: "1 second", backoff: "exponential" },
  timeout: "30 seconds",
};

/** The planner: what an LLM would answer for the goal, made deterministic. */
function planFor(goal: string): ToolCall[] {
  const topic = goal.replace(/[.?!]+$/, "");
  return [
    { tool: "web_search", input: topic },
    { tool: "read_page", input: `top result for ${topic}` },
    { tool: "draft_email", input: `findings on ${topic}` },
  ];
}

function checkPlan(plan: unknown): ToolCall[] {
  const tools = ["web_search", "read_page", "summarize", "draft_email"];
  if (!Array.isArray(plan) || plan.length > MAX_CALLS
      || !plan.every((c) => tools.includes(c?.tool) && typeof c?.input === "string")) {
    throw new NonRetryableError(`a plan is a list of at most ${MAX_CALLS} {tool, input} with tool `
      + `one of ${tools.join(", ")}`, "InvalidPlan");
  }
  return plan as ToolCall[];
}

class Agent extends WorkflowEntrypoint<unknown, AgentParams> {
  async run(event: WorkflowEvent<AgentParams>, step: WorkflowStep) {
    const goal = event.payload?.goal;
    if (typeof goal !== "string" || !goal) {
      throw new NonRetryableError("`goal` (a string) is required", "InvalidParams");
    }
    const plan = await step.do("plan", async () => checkPlan(event.payload.plan ?? planFor(goal)));
    console.log(`agent: ${plan.length} tool calls planned for "${goal}"`);

    const results: { tool: string; status: "done" | "rejected"; output?: unknown }[] = [];
    for (const [index, call] of plan.entries()) {
      let approval;
      try {
        approval = await step.waitForEvent<{ approved?: boolean }>(`approve-${index}`, {
          type: "approval", timeout: event.payload.approval_timeout ?? "1 day",
        });
      } catch (error) {
        if ((error as Error).name !== "WaitForEventTimeout") throw error;
        return { goal, results, summary: null, outcome: "expired" };
      }
      if (approval.payload?.approved !== true) {
        results.push({ tool: call.tool, status: "rejected" });
        continue;
      }
      await this.env.WORKFLOWS.create({
        workflow: "tool_call", id: `${event.instanceId}-call-${index}`,
        params: { parent_id: event.instanceId, index, ...call,
                  fail_attempts: event.payload.fail_attempts ?? 0 },
      });
      const done = await step.waitForEvent<ToolResult>(`result-${index}`,
                                                       { type: "tool_result", timeout: "1 hour" });
      results.push({ tool: call.tool, status: "done", output: done.payload.output });
    }

    const summary = await step.do("summarize", async () => {
      const done = results.filter((r) => r.status === "done").map((r) => r.tool);
      return `${done.length} of ${plan.length} tool calls done (${done.join(", ") || "none"})`;
    });
    return { goal, results, summary, outcome: "finished" };
  }
}

/** The tools: deterministic stand-ins for a search API, a fetcher, a summarizer, a mailer. */
function runTool(tool: string, input: string): unknown {
  switch (tool) {
    case "web_search":
      return { hits: [1, 2, 3].map((n) => `https://example.com/${encodeURIComponent(input)}/${n}`) };
    case "read_page":
      return { text: `A page about ${input}.`, words: input.split(/\s+/).length + 4 };
    case "summarize":
      return { summary: input.slice(0, 80) };
    default:
      return { to: "team@hooli.test", subject: `Re: ${input}`, queued: true };
  }
}

interface ToolCallParams extends ToolCall {
  parent_id: string;
  index: number;
  fail_attempts?: number;
}

class ToolCallWorkflow extends WorkflowEntrypoint<unknown, ToolCallParams> {
  async run(event: WorkflowEvent<ToolCallParams>, step: WorkflowStep) {
    const { parent_id: parentId, index, tool, input } = event.payload;
    const output = await step.do(`tool:${tool}`, TOOL_RETRIES, async ({ attempt }) => {
      if (attempt <= (event.payload.fail_attempts ?? 0)) {
        throw new Error(`${tool} timed out (attempt ${attempt})`);
      }
      console.log(`tool ${tool}(${JSON.stringify(input)})`);
      return runTool(tool, input);
    });
    const parent = await this.env.WORKFLOWS.get(parentId);
    await parent.sendEvent({ type: "tool_result", payload: { index, tool, output } });
    return output;
  }
}

export { Agent as agent, ToolCallWorkflow as tool_call };
