-- `dwf_claim` (migration 0006) at a cost that does not grow with the backlog.
--
-- 1. Which tenants have due work: 0006 asked `EXISTS` of every tenant, which the planner
--    ran as a hash join over every due instance (a young table has no statistics, so it
--    expected 4): a claim read the whole backlog (3,000 instances: 0.4 ms of the server's
--    CPU, per claim, in every claim while a backlog drains). Now a walk over the tenants
--    with queued or waiting instances, two index lookups each on `instances_due_by_tenant`
--    (the next such tenant after the last; its earliest due time): the cost grows with the
--    tenants that have work, not with their instances.
-- 2. A tenant's running count was computed twice (the planner inlined `rooms` into both
--    the room test and the LIMIT): once now (MATERIALIZED).
-- 3. Its statements are planned once per connection (`plan_cache_mode`): PL/pgSQL's
--    default planned both again at every call (a custom plan for the parameters' values),
--    ~250 us of the server's CPU a claim, half of what a small claim cost. Their plans do
--    not depend on the values: every lookup is by tenant and due time, on the indexes
--    named above (`test_pg_claims.py` reads them).
--
-- Everything else as in 0006: the tenants are locked in key order, then counted and
-- claimed from in a statement of their own (a fresh snapshot that holds every claim
-- committed before ours), and the COMMIT does not wait for the disk.
CREATE OR REPLACE FUNCTION dwf_claim(now_ms bigint, max_claims integer, default_cap integer,
                                     worker text, run_ids text[])
RETURNS TABLE (tenant_id text, instance_id text, run_id text, limits text, workflow text,
               module_sha256 text, params bytea, created_at_ms bigint, has_steps boolean)
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    due text[];
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT array_agg(locked.tenant_id ORDER BY locked.tenant_id) INTO due FROM (
        SELECT t.tenant_id FROM tenants t
        WHERE t.tenant_id = ANY(ARRAY(
            WITH RECURSIVE waiting (tenant_id) AS (
                SELECT min(i.tenant_id) FROM instances i
                WHERE i.status IN ('queued', 'waiting')
                UNION ALL
                SELECT (SELECT min(i.tenant_id) FROM instances i
                        WHERE i.status IN ('queued', 'waiting')
                        AND i.tenant_id > w.tenant_id)
                FROM waiting w WHERE w.tenant_id IS NOT NULL)
            SELECT w.tenant_id FROM waiting w
            WHERE (SELECT min(i.wake_at_ms) FROM instances i
                   WHERE i.tenant_id = w.tenant_id
                   AND i.status IN ('queued', 'waiting')) <= now_ms))
        ORDER BY t.tenant_id FOR NO KEY UPDATE OF t) locked;
    IF due IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH rooms AS MATERIALIZED (
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
