-- Dashboard accounts (user + password) for people who log in to /ui without a management token.
-- Version 0100 keeps clear of the core schema's numbering (0001, 0002, ...).
-- The password is stored as an argon2id PHC string; a login mints a session API token with the
-- user's role (named 'dashboard-session:<user>'), so the management API checks roles as usual.
CREATE TABLE dashboard_users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at BIGINT NOT NULL
);
