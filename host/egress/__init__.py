"""Capabilities a tenant's guest has only when the host grants them: outbound HTTP under
a per-tenant egress policy, and secrets substituted on the way out.

A guest has no ambient authority (no sockets, no WASI). `http_fetch` (proposal 0003)
asks the host to make a request; this package decides whether it may go (the tenant's
rules, then the address it resolves to), makes it with the tenant's limits, fills in
`{{secret:NAME}}` after the checks, and hands back the response with the secrets taken
out again.
"""
