/**
 * acme_ts: the signup front door (tenants/acme/signup.c in TypeScript), the
 * module's fetch handler. Requests sent to `dwf serve` with `x-tenant-id` land here:
 *   POST /signup        JSON {email, id?, nudge_after_ms?, approval_timeout_ms?}
 *                       starts an "onboarding" instance with that object as params;
 *                       201 {id, status_url}
 *   GET  /status/<id>   200 {id, workflow, status, output, error, ...}; 404 if unknown
 *   POST /approve/<id>  JSON {approved: bool}: sends the manager's "approval" event; 202
 * Anything else is 404. Errors are JSON {error: {code, message}}.
 */
import type { Env, ExportedHandler } from "dynamic-workflows";

function error(status: number, code: string, message: string): Response {
  return Response.json({ error: { code, message } }, { status });
}

/** A binding call's failure as an HTTP answer: the caller's fault, or not found. */
function bindingError(thrown: unknown): Response {
  if (!(thrown instanceof Error)) throw thrown;
  const status = thrown.name === "UnknownInstance" ? 404
    : thrown.name === "DuplicateInstance" || thrown.name === "InvalidState" ? 409 : 400;
  return error(status, thrown.name, thrown.message);
}

async function jsonBody(request: Request): Promise<unknown> {
  if (!(request.headers.get("content-type") ?? "").includes("json")) return undefined;
  try {
    return await request.json();
  } catch {
    return undefined;
  }
}

async function signup(request: Request, env: Env): Promise<Response> {
  const body = await jsonBody(request);
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return error(400, "invalid_body",
                 'send a JSON object {"email": ...} with content-type application/json');
  }
  const fields = body as { email?: unknown; id?: unknown };
  if (typeof fields.email !== "string" || !fields.email) {
    return error(400, "invalid_body", "`email` (a string) is required");
  }
  try {
    const instance = await env.WORKFLOWS.create({
      workflow: "onboarding", params: body,
      id: typeof fields.id === "string" ? fields.id : undefined,
    });
    console.log(`signup: ${fields.email} is onboarding as ${instance.id}`);
    const statusUrl = `/status/${instance.id}`;
    return Response.json({ id: instance.id, status_url: statusUrl },
                         { status: 201, headers: { location: statusUrl } });
  } catch (thrown) {
    return bindingError(thrown);
  }
}

async function status(env: Env, id: string): Promise<Response> {
  try {
    return Response.json(await (await env.WORKFLOWS.get(id)).status());
  } catch (thrown) {
    return bindingError(thrown);
  }
}

async function approve(request: Request, env: Env, id: string): Promise<Response> {
  const body = await jsonBody(request);
  const approved = (body as { approved?: unknown } | undefined)?.approved === true;
  try {
    await (await env.WORKFLOWS.get(id)).sendEvent({ type: "approval", payload: { approved } });
  } catch (thrown) {
    return bindingError(thrown);
  }
  return Response.json({ id, approved }, { status: 202 });
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    const id = (prefix: string) => (pathname.startsWith(prefix) ? pathname.slice(prefix.length) : "");
    if (request.method === "POST" && pathname === "/signup") return signup(request, env);
    if (request.method === "GET" && id("/status/")) return status(env, id("/status/"));
    if (request.method === "POST" && id("/approve/")) return approve(request, env, id("/approve/"));
    return error(404, "not_found", `acme has no route ${request.method} ${pathname}`);
  },
} satisfies ExportedHandler;
