-- Outbound HTTP and secrets (SQLite's migration 0004). A tenant's egress rules: a JSON
-- list of rule lines ("allow https://api.example.com:443", "deny ..."); empty: every
-- outbound request is denied.
ALTER TABLE tenants ADD COLUMN egress text NOT NULL DEFAULT '[]';

-- Tenant secrets, sealed (AES-256-GCM, the tenant and name bound in): never in clear here.
CREATE TABLE secrets (
    tenant_id text NOT NULL REFERENCES tenants(tenant_id),
    name text NOT NULL,
    sealed bytea NOT NULL,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
