-- Tenants as a security boundary (docs/security.md).
--
-- api_tokens.tenant_id: the one tenant a token may act on; NULL marks a cross-tenant token, which
-- only the command line creates (`keel-server create-token --cross-tenant`).
-- Tokens made before this migration acted on any tenant. The first one (the admin token written to
-- DATA_DIR/admin.token at first start) stays cross-tenant; every other one is bound to tenant
-- 'default', the tenant X-Keel-Tenant defaulted to (if there is none, they stay cross-tenant, so
-- an upgrade never widens what a token can reach).
ALTER TABLE api_tokens ADD COLUMN tenant_id BIGINT REFERENCES tenants(id);
UPDATE api_tokens SET tenant_id = (SELECT id FROM tenants WHERE name = 'default')
    WHERE id <> (SELECT MIN(id) FROM api_tokens);
-- Dashboard logins made before tenancy end: their session tokens were not bound to a tenant.
DELETE FROM dashboard_sessions;
DELETE FROM api_tokens WHERE name LIKE 'dashboard-session:%';

-- Dashboard accounts belong to a tenant too (NULL: cross-tenant, command line only); a name is
-- unique within its tenant. SQLite cannot drop the old UNIQUE (name), so the table is rebuilt.
CREATE TABLE dashboard_users_0700 (
    id INTEGER PRIMARY KEY,
    tenant_id BIGINT REFERENCES tenants(id),
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
INSERT INTO dashboard_users_0700 (id, tenant_id, name, password_hash, role, created_at)
    SELECT id, (SELECT id FROM tenants WHERE name = 'default'), name, password_hash, role, created_at
    FROM dashboard_users;
DROP TABLE dashboard_users;
ALTER TABLE dashboard_users_0700 RENAME TO dashboard_users;

-- Tenant names are looked up case-insensitively (SWUpdate users write DEFAULT, hawkBit's spelling),
-- so two names may not differ only in case.
CREATE UNIQUE INDEX tenants_name_nocase ON tenants (lower(name));
