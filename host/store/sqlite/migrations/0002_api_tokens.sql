-- API tokens for the HTTP management API (`dwf token create`). Only a hash is stored: the
-- token itself is shown once, when it is created.
CREATE TABLE api_tokens (
    token_id TEXT PRIMARY KEY,         -- public part of the token, names it in lists and logs
    tenant_id TEXT,                    -- the one tenant it may act for; NULL: an admin token
    token_sha256 TEXT NOT NULL,        -- hex sha256 of the whole token
    name TEXT NOT NULL DEFAULT '',     -- a note for people ("ci deploys")
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER              -- set by `dwf token revoke`; the row stays for audit
) STRICT;

-- `dwf token list --tenant T`. (Authentication looks tokens up by token_id, the primary key.)
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant_id, created_at_ms);
