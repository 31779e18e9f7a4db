/**
 * hooli's front door: start agents, watch them, approve or reject their tool calls.
 *   POST /agents                {goal, plan?, id?}         -> 201 {id}
 *   GET  /agents/<id>           -> 200 the instance's status
 *   POST /agents/<id>/approval  {approved: bool}           -> 202
 */
import type { ExportedHandler } from "dynamic-workflows";

function failure(thrown: unknown): Response {
  const error = thrown instanceof Error ? thrown : new Error(String(thrown));
  const status = error.name === "UnknownInstance" ? 404
    : error.name === "DuplicateInstance" || error.name === "InvalidState" ? 409 : 400;
  return Response.json({ error: { code: error.name, message: error.message } }, { status });
}

export default {
  async fetch(request, env) {
    const parts = new URL(request.url).pathname.split("/").filter(Boolean);
    try {
      if (request.method === "POST" && parts.length === 1 && parts[0] === "agents") {
        const body = await request.json<{ goal?: string; plan?: unknown; id?: string }>();
        const instance = await env.WORKFLOWS.create({ workflow: "agent", id: body.id, params: body });
        return Response.json({ id: instance.id }, { status: 201 });
      }
      if (parts[0] === "agents" && parts.length === 2 && request.method === "GET") {
        return Response.json(await (await env.WORKFLOWS.get(parts[1])).status());
      }
      if (parts[0] === "agents" && parts[2] === "approval" && request.method === "POST") {
        const { approved } = await request.json<{ approved?: boolean }>();
        await (await env.WORKFLOWS.get(parts[1])).sendEvent({
          type: "approval", payload: { approved: approved === true },
        });
        return new Response(null, { status: 202 });
      }
    } catch (thrown) {
      return failure(thrown);
    }
    return Response.json({ error: { code: "not_found", message: "no such route" } }, { status: 404 });
  },
} satisfies ExportedHandler;
