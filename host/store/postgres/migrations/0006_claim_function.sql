-- A claim in one statement (`SELECT * FROM dwf_claim(...)`, in a transaction of its own):
-- one network round trip, and the tenant rows it locks are held only while the server
-- runs it and commits, never while a busy worker process gets round to sending its next
-- statement (with a claim of three statements, another process's claims for the same
-- tenant waited that long).
--
-- 1. Lock the tenants with due work (`FOR NO KEY UPDATE`, in key order: claims never
--    deadlock each other; another worker claiming for one of them waits until we
--    commit. Skipping a locked tenant instead left the second worker idle until its
--    next poll.)
-- 2. In a statement of its own, after the lock (a function's statements each take a new
--    snapshot under READ COMMITTED, so it holds every claim committed before ours and
--    the running counts are current; one statement that waited for the lock would count
--    from the snapshot it started with, and overshoot the cap): each tenant's due
--    instances, at most its room under `max_concurrent_invocations`, skipping those
--    another transaction holds (something else is changing them); then take up to
--    `max_claims` of them one tenant at a time in turn (tenants in key order, each's in
--    due order), and mark them running under the run ids given, in that order.
--
-- Its COMMIT does not wait for the disk: a claim lost in a crash of the server leaves the
-- instance due again, and its run's first journal write, synchronous and written after
-- the claim in the server's log, would have made the claim durable with it.
CREATE FUNCTION dwf_claim(now_ms bigint, max_claims integer, default_cap integer,
                          worker text, run_ids text[])
RETURNS TABLE (tenant_id text, instance_id text, run_id text, limits text, workflow text,
               module_sha256 text, params bytea, created_at_ms bigint, has_steps boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    due text[];
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT array_agg(locked.tenant_id ORDER BY locked.tenant_id) INTO due FROM (
        SELECT t.tenant_id FROM tenants t
        WHERE EXISTS (SELECT 1 FROM instances i WHERE i.tenant_id = t.tenant_id
                      AND i.status IN ('queued', 'waiting') AND i.wake_at_ms <= now_ms)
        ORDER BY t.tenant_id FOR NO KEY UPDATE OF t) locked;
    IF due IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH rooms AS (
        SELECT t.tenant_id, t.limits,
               COALESCE((t.limits::jsonb ->> 'max_concurrent_invocations')::integer,
                        default_cap)
               - (SELECT count(*) FROM instances r WHERE r.tenant_id = t.tenant_id
                  AND r.status IN ('running', 'waitingForPause')) AS room
        FROM tenants t WHERE t.tenant_id = ANY(due)),
    found AS (
        SELECT rooms.tenant_id, rooms.limits, c.instance_id, c.workflow, c.module_sha256,
               c.params, c.created_at_ms, c.has_steps,
               row_number() OVER (PARTITION BY rooms.tenant_id ORDER BY c.wake_at_ms) AS turn
        FROM rooms, LATERAL (
            SELECT i.instance_id, i.workflow, i.module_sha256, i.params, i.created_at_ms,
                   i.wake_at_ms,
                   EXISTS (SELECT 1 FROM steps s WHERE s.tenant_id = i.tenant_id
                           AND s.instance_id = i.instance_id) AS has_steps
            FROM instances i WHERE i.tenant_id = rooms.tenant_id
            AND i.status IN ('queued', 'waiting') AND i.wake_at_ms <= now_ms
            ORDER BY i.wake_at_ms LIMIT LEAST(rooms.room, max_claims)
            FOR NO KEY UPDATE OF i SKIP LOCKED) c
        WHERE rooms.room > 0),
    picked AS (
        SELECT found.*, row_number() OVER (ORDER BY found.turn, found.tenant_id) AS n
        FROM found ORDER BY found.turn, found.tenant_id LIMIT max_claims),
    marked AS (
        UPDATE instances i SET status = 'running', run_id = run_ids[p.n], owner = worker,
               wake_at_ms = NULL, waiting_event_type = NULL, updated_at_ms = now_ms
        FROM picked p WHERE i.tenant_id = p.tenant_id AND i.instance_id = p.instance_id)
    SELECT p.tenant_id, p.instance_id, run_ids[p.n], p.limits, p.workflow, p.module_sha256,
           p.params, p.created_at_ms, p.has_steps
    FROM picked p ORDER BY p.n;
END;
$$;
