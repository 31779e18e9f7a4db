-- A module's manifest belongs to the tenant version that registered it, not to its bytes:
-- dwf_describe runs under the registering tenant's limits, so the same bytes may describe
-- themselves differently for another tenant, and that must never change what this tenant
-- runs. Only the tenant itself, registering the same bytes again, refreshes it.
ALTER TABLE tenant_modules ADD COLUMN manifest TEXT NOT NULL DEFAULT '{}';
UPDATE tenant_modules SET manifest = (
    SELECT manifest FROM modules WHERE modules.sha256 = tenant_modules.sha256);
ALTER TABLE modules DROP COLUMN manifest;
