-- The code lifecycle: moving instances between versions, pruning versions, cron schedules,
-- and where on-demand loading last found each tenant's module.

-- Version numbers are never given out twice: registration numbers a new version past the
-- highest one `dwf tenant prune` deleted, too.
ALTER TABLE tenants ADD COLUMN highest_pruned_version INTEGER NOT NULL DEFAULT 0;

-- Drain counts per version (`dwf tenant versions`) and prune's "no instance uses it":
-- a tenant's instances by the module they are pinned to.
CREATE INDEX instances_by_module ON instances (tenant_id, module_sha256);

-- `dwf upgrade`: every move of an instance to another module version (its history).
CREATE TABLE instance_upgrades (
    tenant_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,              -- 1, 2, ... per instance
    from_sha256 TEXT NOT NULL,
    to_sha256 TEXT NOT NULL,
    from_version INTEGER,              -- the tenant's version numbers at the time
    to_version INTEGER,
    journal_length INTEGER NOT NULL,   -- journal positions checked against the new version
    upgraded_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, instance_id, seq),
    FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, instance_id)
        ON DELETE CASCADE
) STRICT;

-- `dwf schedule`: cron schedules. One instance per tick, its id derived from the schedule
-- and the tick; `next_tick_ms` is compared and set in the transaction that starts it.
CREATE TABLE schedules (
    tenant_id TEXT NOT NULL REFERENCES tenants(tenant_id),
    schedule_id TEXT NOT NULL,
    workflow TEXT NOT NULL,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    params BLOB NOT NULL,              -- msgpack
    overlap TEXT NOT NULL CHECK (overlap IN ('skip', 'allow')),
    catchup TEXT NOT NULL CHECK (catchup IN ('none', 'last', 'all')),
    paused INTEGER NOT NULL DEFAULT 0,
    next_tick_ms INTEGER,              -- NULL while paused
    last_tick_ms INTEGER,
    last_instance_id TEXT,
    started INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, schedule_id)
) STRICT;

-- The worker's query: schedules due now, earliest first (and the earliest next tick).
CREATE INDEX schedules_due ON schedules (next_tick_ms) WHERE paused = 0;

-- On-demand loading: what identified a tenant's module source (ETag, mtime and size,
-- sha256) when its module was last loaded from it, by any host sharing the database.
CREATE TABLE module_source_stamps (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(tenant_id),
    stamp TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    loaded_at_ms INTEGER NOT NULL
) STRICT;
