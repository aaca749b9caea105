-- keel-server schema. Timestamps are milliseconds since the Unix epoch (BIGINT).
-- Queries use only SQL that SQLite and PostgreSQL both accept ($N parameters, RETURNING).

CREATE TABLE tenants (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    gateway_token_hash TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at BIGINT NOT NULL
);

CREATE TABLE targets (
    id INTEGER PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    controller_id TEXT NOT NULL,
    name TEXT NOT NULL,
    token_hash TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    request_attributes BIGINT NOT NULL DEFAULT 1,
    last_poll_at BIGINT,
    address TEXT,
    installed_action_id BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, controller_id)
);

CREATE TABLE target_tags (
    target_id BIGINT NOT NULL REFERENCES targets(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (target_id, tag)
);
CREATE INDEX target_tags_by_tag ON target_tags(tag);

CREATE TABLE software_modules (
    id INTEGER PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    module_type TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, module_type, name, version)
);

CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY,
    module_id BIGINT NOT NULL REFERENCES software_modules(id),
    filename TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    sha1 TEXT NOT NULL,
    md5 TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (module_id, filename)
);

CREATE TABLE distribution_sets (
    id INTEGER PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name, version)
);

CREATE TABLE distribution_set_modules (
    ds_id BIGINT NOT NULL REFERENCES distribution_sets(id),
    module_id BIGINT NOT NULL REFERENCES software_modules(id),
    PRIMARY KEY (ds_id, module_id)
);

CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    ds_id BIGINT NOT NULL REFERENCES distribution_sets(id),
    action_type TEXT NOT NULL,
    status TEXT NOT NULL,
    success_threshold BIGINT NOT NULL,
    error_threshold BIGINT NOT NULL,
    status_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE rollout_groups (
    id INTEGER PRIMARY KEY,
    rollout_id BIGINT NOT NULL REFERENCES rollouts(id),
    position BIGINT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    UNIQUE (rollout_id, position)
);

CREATE TABLE rollout_group_targets (
    group_id BIGINT NOT NULL REFERENCES rollout_groups(id),
    target_id BIGINT NOT NULL REFERENCES targets(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, target_id)
);

CREATE TABLE actions (
    id INTEGER PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    target_id BIGINT NOT NULL REFERENCES targets(id) ON DELETE CASCADE,
    ds_id BIGINT NOT NULL REFERENCES distribution_sets(id),
    rollout_id BIGINT REFERENCES rollouts(id),
    rollout_group_id BIGINT REFERENCES rollout_groups(id),
    action_type TEXT NOT NULL,
    forcetime BIGINT,
    mw_schedule TEXT,
    mw_duration_secs BIGINT,
    mw_timezone TEXT,
    status TEXT NOT NULL,
    active BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX actions_by_target ON actions(target_id, active);
CREATE INDEX actions_by_group ON actions(rollout_group_id, status);

CREATE TABLE action_status (
    id INTEGER PRIMARY KEY,
    action_id BIGINT NOT NULL REFERENCES actions(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    messages TEXT NOT NULL,
    code BIGINT,
    progress_cnt BIGINT,
    progress_of BIGINT,
    reported_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX action_status_by_action ON action_status(action_id);
