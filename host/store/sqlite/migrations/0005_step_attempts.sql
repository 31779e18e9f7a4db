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
