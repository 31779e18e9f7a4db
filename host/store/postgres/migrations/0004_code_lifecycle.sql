-- The code lifecycle (SQLite's migration 0007 made the same tables): moving instances
-- between versions, pruning versions, cron schedules, and where on-demand loading last found
-- each tenant's module.

-- Version numbers are never given out twice: registration numbers a new version past the
-- highest one `dwf tenant prune` deleted, too.
ALTER TABLE tenants ADD COLUMN highest_pruned_version integer NOT NULL DEFAULT 0;

-- Drain counts per version (`dwf tenant versions`) and prune's "no instance uses it":
-- a tenant's instances by the module they are pinned to.
CREATE INDEX instances_by_module ON instances (tenant_id, module_sha256);

-- `dwf upgrade`: every move of an instance to another module version (its history).
CREATE TABLE instance_upgrades (
    tenant_id text NOT NULL,
    instance_id text NOT NULL,
    seq integer NOT NULL,              -- 1, 2, ... per instance
    from_sha256 text NOT NULL,
    to_sha256 text NOT NULL,
    from_version integer,              -- the tenant's version numbers at the time
    to_version integer,
    journal_length integer NOT NULL,   -- journal positions checked against the new version
    upgraded_at_ms bigint NOT NULL,
    PRIMARY KEY (tenant_id, instance_id, seq),
    FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, instance_id)
        ON DELETE CASCADE
);

-- `dwf schedule`: cron schedules. One instance per tick, its id derived from the schedule
-- and the tick; `next_tick_ms` is compared and set (the row locked) in the writer
-- transaction that starts it, so workers on many hosts fire each tick once.
CREATE TABLE schedules (
    tenant_id text NOT NULL REFERENCES tenants(tenant_id),
    schedule_id text NOT NULL,
    workflow text NOT NULL,
    cron text NOT NULL,
    timezone text NOT NULL,
    params bytea NOT NULL,             -- msgpack
    overlap text NOT NULL CHECK (overlap IN ('skip', 'allow')),
    catchup text NOT NULL CHECK (catchup IN ('none', 'last', 'all')),
    paused boolean NOT NULL DEFAULT false,
    next_tick_ms bigint,               -- NULL while paused
    last_tick_ms bigint,
    last_instance_id text,
    started integer NOT NULL DEFAULT 0,
    skipped integer NOT NULL DEFAULT 0,
    last_error text,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL,
    PRIMARY KEY (tenant_id, schedule_id)
);

-- The workers' query: schedules due now, earliest first (and the earliest next tick).
CREATE INDEX schedules_due ON schedules (next_tick_ms) WHERE NOT paused;

-- On-demand loading: what identified a tenant's module source (ETag, mtime and size,
-- sha256) when its module was last loaded from it, by any host sharing the database.
CREATE TABLE module_source_stamps (
    tenant_id text PRIMARY KEY REFERENCES tenants(tenant_id),
    stamp text NOT NULL,
    sha256 text NOT NULL,
    loaded_at_ms bigint NOT NULL
);
