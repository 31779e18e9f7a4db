-- Modules are content-addressed: one row per distinct wasm binary, whoever registered it.
CREATE TABLE modules (
    sha256 TEXT PRIMARY KEY,
    wasm BLOB NOT NULL,
    size_bytes INTEGER NOT NULL,
    manifest TEXT NOT NULL,            -- JSON: {"abi", "sdk", "workflows"}
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE tenants (
    tenant_id TEXT PRIMARY KEY,
    active_sha256 TEXT NOT NULL REFERENCES modules(sha256),
    limits TEXT NOT NULL DEFAULT '{}', -- JSON overrides of TenantLimits
    created_at_ms INTEGER NOT NULL
) STRICT;

-- Every version a tenant registered, in order; instances pin one of these.
CREATE TABLE tenant_modules (
    tenant_id TEXT NOT NULL REFERENCES tenants(tenant_id),
    sha256 TEXT NOT NULL REFERENCES modules(sha256),
    version INTEGER NOT NULL,
    registered_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, sha256),
    UNIQUE (tenant_id, version)
) STRICT;

CREATE TABLE instances (
    tenant_id TEXT NOT NULL REFERENCES tenants(tenant_id),
    instance_id TEXT NOT NULL,
    workflow TEXT NOT NULL,
    module_sha256 TEXT NOT NULL REFERENCES modules(sha256),
    params BLOB NOT NULL,              -- msgpack
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'paused', 'waiting',
        'waitingForPause', 'errored', 'terminated', 'complete')),
    output BLOB,                       -- msgpack, when complete
    error_name TEXT,
    error_message TEXT,
    wake_at_ms INTEGER,                -- due time for the scheduler; NULL: nothing to do
    waiting_event_type TEXT,           -- set while blocked in wait_for_event
    run_id TEXT,                       -- fencing token of the invocation that holds it
    parent_instance_id TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER,
    PRIMARY KEY (tenant_id, instance_id)
) STRICT;

-- The scheduler's query: the earliest due instances that can run.
CREATE INDEX instances_due ON instances (wake_at_ms) WHERE status IN ('queued', 'waiting');
-- The scheduler's per-tenant query: one tenant's earliest due instances (fair claiming).
CREATE INDEX instances_due_by_tenant ON instances (tenant_id, wake_at_ms)
    WHERE status IN ('queued', 'waiting');
-- `dwf list --status`, recovery of running instances, running count per tenant.
CREATE INDEX instances_by_status ON instances (status, tenant_id);

-- The journal: one row per position an instance reached.
CREATE TABLE steps (
    tenant_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('do', 'sleep', 'event', 'create', 'send', 'now',
        'random')),
    name TEXT NOT NULL,
    occurrence INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ok', 'error', 'pending')),
    result BLOB,                       -- msgpack, when ok
    error_name TEXT,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    wake_at_ms INTEGER,                -- pending: when the timer, wait deadline or retry is due
    started_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER,
    PRIMARY KEY (tenant_id, instance_id, position),
    FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, instance_id)
        ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload BLOB NOT NULL,             -- msgpack
    sent_at_ms INTEGER NOT NULL,
    consumed_position INTEGER,         -- the wait_for_event position that took it
    FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, instance_id)
        ON DELETE CASCADE
) STRICT;

-- wait_for_event: the oldest unconsumed event of a type (FIFO per type).
CREATE INDEX events_pending ON events (tenant_id, instance_id, type, seq)
    WHERE consumed_position IS NULL;
