-- Several keel-server processes on one database (docs/scale-out.md, "Replicas").
--
-- leases: named leases with a holder and an expiry (ms since the epoch). The rollout scheduler
-- runs only in the replica holding the 'scheduler' lease; the holder renews it every tick, any
-- replica takes it over once it has expired (its holder died or stalled).
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- A rollout group creates at most one action per target, whoever starts it.
CREATE UNIQUE INDEX actions_one_per_group_target ON actions(rollout_group_id, target_id);

-- Dashboard login sessions, so any replica can serve any logged-in request. The cookie carries
-- the session id; only its sha256 is stored, and the session's management API token is stored
-- encrypted with a key derived from the id (ChaCha20-Poly1305), so the table alone opens nothing;
-- token_hash (as in api_tokens) tells which minted tokens still have a session.
CREATE TABLE dashboard_sessions (
    id_hash TEXT PRIMARY KEY,
    token_sealed TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    minted BIGINT NOT NULL,
    csrf TEXT NOT NULL,
    tenant TEXT NOT NULL,
    last_used_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
