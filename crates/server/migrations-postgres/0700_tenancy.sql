-- PostgreSQL twin of migrations/0700_tenancy.sql (see there for the rules).
ALTER TABLE api_tokens ADD COLUMN tenant_id BIGINT REFERENCES tenants(id);
UPDATE api_tokens SET tenant_id = (SELECT id FROM tenants WHERE name = 'default')
    WHERE id <> (SELECT MIN(id) FROM api_tokens);
DELETE FROM dashboard_sessions;
DELETE FROM api_tokens WHERE name LIKE 'dashboard-session:%';

ALTER TABLE dashboard_users ADD COLUMN tenant_id BIGINT REFERENCES tenants(id);
UPDATE dashboard_users SET tenant_id = (SELECT id FROM tenants WHERE name = 'default');
ALTER TABLE dashboard_users DROP CONSTRAINT dashboard_users_name_key;
ALTER TABLE dashboard_users ADD CONSTRAINT dashboard_users_tenant_name UNIQUE (tenant_id, name);

CREATE UNIQUE INDEX tenants_name_nocase ON tenants (lower(name));
