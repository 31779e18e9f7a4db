-- What operators see (SQLite's migration 0005): every kept attempt of a step, and the
-- indexes of the pages that list instances.

-- Per-attempt history of step.do bodies: a step that succeeded at its first attempt has
-- no rows here; one that ever failed has a row per attempt, the latest ATTEMPTS_KEPT (20).
CREATE TABLE step_attempts (
    tenant_id text NOT NULL,
    instance_id text NOT NULL,
    position integer NOT NULL,         -- the step's journal position
    attempt integer NOT NULL,          -- 1-based
    started_at_ms bigint NOT NULL,
    finished_at_ms bigint NOT NULL,
    state text NOT NULL CHECK (state IN ('ok', 'error')),
    error_name text,
    error_message text,
    retry_delay_ms bigint,             -- a failed attempt that is retried: the wait before the next
    -- Serves the status query (one instance's attempts in order) and the pruning of one
    -- step's oldest attempts.
    PRIMARY KEY (tenant_id, instance_id, position, attempt),
    FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, instance_id)
        ON DELETE CASCADE
);

-- Pages of instances, newest first (the dashboard, `GET .../instances`, `dwf list`).
CREATE INDEX instances_by_created ON instances (tenant_id, created_at_ms, instance_id);
-- An instance's children, which its page links to; only children are in it.
CREATE INDEX instances_by_parent ON instances (tenant_id, parent_instance_id)
    WHERE parent_instance_id IS NOT NULL;
