-- The PostgreSQL schema: the same tables as SQLite's (host/store/sqlite/migrations), plus
-- what many workers sharing one database need: `workers` (leases) and an instance's
-- `owner`. Times are milliseconds since the epoch, as bigint, like SQLite's.

-- Modules are content-addressed: one row per distinct wasm binary, whoever registered it.
CREATE TABLE modules (
    sha256 text PRIMARY KEY,
    wasm bytea NOT NULL,
    size_bytes bigint NOT NULL,
    created_at_ms bigint NOT NULL
);

CREATE TABLE tenants (
    tenant_id text PRIMARY KEY,
    active_sha256 text NOT NULL REFERENCES modules(sha256),
    limits text NOT NULL DEFAULT '{}', -- JSON overrides of TenantLimits
    created_at_ms bigint NOT NULL
);

-- Every version a tenant registered, in order; instances pin one of these. The manifest
-- belongs to the tenant's version, not to the bytes: dwf_describe runs under the
-- registering tenant's limits, so the same bytes may describe themselves differently for
-- another tenant (SQLite's migration 0003 made the same move).
CREATE TABLE tenant_modules (
    tenant_id text NOT NULL REFERENCES tenants(tenant_id),
    sha256 text NOT NULL REFERENCES modules(sha256),
    version integer NOT NULL,
    registered_at_ms bigint NOT NULL,
    manifest text NOT NULL,            -- JSON: {"abi", "sdk", "workflows", "fetch"}
    PRIMARY KEY (tenant_id, sha256),
    UNIQUE (tenant_id, version)
);

-- Workers holding leases: a worker renews its row while it lives; the running instances of
-- a worker whose lease ran out are queued again for any other worker (takeover).
CREATE TABLE workers (
    worker_id text PRIMARY KEY,        -- host:pid:random, made when the process opens the db
    started_at_ms bigint NOT NULL,
    lease_until_ms bigint NOT NULL     -- the database's clock, never a host's
);

CREATE TABLE instances (
    tenant_id text NOT NULL REFERENCES tenants(tenant_id),
    instance_id text NOT NULL,
    workflow text NOT NULL,
    module_sha256 text NOT NULL REFERENCES modules(sha256),
    params bytea NOT NULL,             -- msgpack
    status text NOT NULL CHECK (status IN ('queued', 'running', 'paused', 'waiting',
        'waitingForPause', 'errored', 'terminated', 'complete')),
    output bytea,                      -- msgpack, when complete
    error_name text,
    error_message text,
    wake_at_ms bigint,                 -- due time for the scheduler (0: at once, whatever
                                       -- the clock says); NULL: nothing to do
    waiting_event_type text,           -- set while blocked in wait_for_event
    run_id text,                       -- fencing token of the invocation that holds it
    owner text,                        -- the worker whose lease keeps that invocation
    parent_instance_id text,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL,
    finished_at_ms bigint,
    PRIMARY KEY (tenant_id, instance_id)
);

-- The next timer: the earliest due time of all.
CREATE INDEX instances_due ON instances (wake_at_ms) WHERE status IN ('queued', 'waiting');
-- Claims: one tenant's earliest due instances (fair claiming), and which tenants have any.
CREATE INDEX instances_due_by_tenant ON instances (tenant_id, wake_at_ms)
    WHERE status IN ('queued', 'waiting');
-- `dwf list --status`; running count per tenant; leases that ran out.
CREATE INDEX instances_by_status ON instances (status, tenant_id);
-- `dwf list`, oldest first.
CREATE INDEX instances_by_age ON instances (created_at_ms, instance_id);

-- The journal: one row per position an instance reached.
CREATE TABLE steps (
    tenant_id text NOT NULL,
    instance_id text NOT NULL,
    position integer NOT NULL,
    kind text NOT NULL CHECK (kind IN ('do', 'sleep', 'event', 'create', 'send', 'now',
        'random')),
    name text NOT NULL,
    occurrence integer NOT NULL,
    state text NOT NULL CHECK (state IN ('ok', 'error', 'pending')),
    result bytea,                      -- msgpack, when ok
    error_name text,
    error_message text,
    attempts integer NOT NULL DEFAULT 0,
    wake_at_ms bigint,                 -- pending: when the timer, wait deadline or retry is due
    started_at_ms bigint NOT NULL,
    finished_at_ms bigint,
    PRIMARY KEY (tenant_id, instance_id, position),
    FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, instance_id)
        ON DELETE CASCADE
);

CREATE TABLE events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    instance_id text NOT NULL,
    type text NOT NULL,
    payload bytea NOT NULL,            -- msgpack
    sent_at_ms bigint NOT NULL,
    consumed_position integer,         -- the wait_for_event position that took it
    FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, instance_id)
        ON DELETE CASCADE
);

-- wait_for_event: the oldest unconsumed event of a type (FIFO per type).
CREATE INDEX events_pending ON events (tenant_id, instance_id, type, seq)
    WHERE consumed_position IS NULL;

-- API tokens for the HTTP management API (`dwf token create`). Only a hash is stored: the
-- token itself is shown once, when it is created.
CREATE TABLE api_tokens (
    token_id text PRIMARY KEY,         -- public part of the token, names it in lists and logs
    tenant_id text,                    -- the one tenant it may act for; NULL: an admin token
    token_sha256 text NOT NULL,        -- hex sha256 of the whole token
    name text NOT NULL DEFAULT '',     -- a note for people ("ci deploys")
    created_at_ms bigint NOT NULL,
    revoked_at_ms bigint               -- set by `dwf token revoke`; the row stays for audit
);

-- `dwf token list --tenant T`. (Authentication looks tokens up by token_id, the primary key.)
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant_id, created_at_ms);
