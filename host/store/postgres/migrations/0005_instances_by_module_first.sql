-- `instances_by_module` led by the module, not the tenant. Led by the tenant it was as
-- narrow as the primary key, so on a young table (no statistics yet) the planner found it
-- as cheap for a lookup by (tenant_id, instance_id) and cached that plan: the check of
-- every journal row's foreign key, and reading an instance's status, then scanned every
-- instance of the tenant (measured: 0.1-0.3 ms a journal row, growing with the table).
-- Led by the module, it serves what it is for (drain counts per version, prune's "no
-- instance uses it", which names the module alone) and no lookup by key can pick it.
DROP INDEX instances_by_module;
CREATE INDEX instances_by_module ON instances (module_sha256, tenant_id);
