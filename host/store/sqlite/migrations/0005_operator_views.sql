-- What operators see (issue 16): every attempt of a step, and the indexes of the pages that
-- list instances.

-- Per-attempt history of step.do bodies, for people (status, history, the API, /ui): the
-- journal (`steps`) keeps only a step's latest state and its attempt count. A step that
-- succeeded at its first attempt has no rows here (its journal row says all there is);
-- one that ever failed has a row per attempt, the latest ATTEMPTS_KEPT (20) of them.
CREATE TABLE step_attempts (
    tenant_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    position INTEGER NOT NULL,         -- the step's journal position
    attempt INTEGER NOT NULL,          -- 1-based
    started_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ok', 'error')),
    error_name TEXT,
    error_message TEXT,
    retry_delay_ms INTEGER,            -- a failed attempt that is retried: the wait before the next
    -- The primary key serves the status query (one instance's attempts in order) and the
    -- pruning of one step's oldest attempts.
    PRIMARY KEY (tenant_id, instance_id, position, attempt),
    FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, instance_id)
        ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- Pages of instances, newest first (the dashboard, `GET .../instances`, `dwf list`): one
-- tenant's in creation order. Only an insert writes it: created_at_ms never changes.
CREATE INDEX instances_by_created ON instances (tenant_id, created_at_ms, instance_id);
-- An instance's children, which its page links to; only children are in it.
CREATE INDEX instances_by_parent ON instances (tenant_id, parent_instance_id)
    WHERE parent_instance_id IS NOT NULL;
