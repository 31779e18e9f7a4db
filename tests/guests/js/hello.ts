import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "dynamic-workflows";

export class hello extends WorkflowEntrypoint {
  async run(event: WorkflowEvent<{ name: string }>, step: WorkflowStep) {
    const a = await step.do("greet", async () => `hello ${event.payload.name}`);
    console.log("greeted", a);
    return { a };
  }
}
