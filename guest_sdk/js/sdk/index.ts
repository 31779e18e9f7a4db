/**
 * dynamic-workflows, the TypeScript guest SDK: what tenant code imports (as
 * "dynamic-workflows", "cloudflare:workers" or "cloudflare:workflows"). The
 * types are declared in ../dynamic-workflows.d.ts; api_check.ts holds this
 * implementation to them.
 */
import "./platform";

export { NonRetryableError, WorkflowEntrypoint } from "./workflow";
