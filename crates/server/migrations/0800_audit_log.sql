-- The audit log (docs/security.md): every change made through the management API or the
-- dashboard, every login (success or failure) and every rejected token.
-- tenant_id is the tenant acted on (NULL: none, e.g. a token that names no known tenant); no
-- foreign key, so records outlive what they describe. address is the client's IP address.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at BIGINT NOT NULL,
    tenant_id BIGINT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    status BIGINT NOT NULL,
    address TEXT,
    detail TEXT
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);
