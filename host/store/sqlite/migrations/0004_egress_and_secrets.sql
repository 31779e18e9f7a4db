-- A tenant's egress rules (outbound HTTP, proposal 0003): a JSON list of rule lines
-- ("allow https://api.example.com:443", "deny ...", "allow http://10.0.0.5:80 private").
-- Empty: every outbound request is denied.
ALTER TABLE tenants ADD COLUMN egress TEXT NOT NULL DEFAULT '[]';

-- Tenant secrets, sealed (AES-256-GCM, the tenant and name bound in): never in clear here.
CREATE TABLE secrets (
    tenant_id TEXT NOT NULL REFERENCES tenants(tenant_id),
    name TEXT NOT NULL,
    sealed BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
) STRICT, WITHOUT ROWID;
