-- TUF metadata of each tenant's repository (docs/tuf.md, "Server: a repository per tenant").
-- The database holds the authoritative copy, so replicas need no shared directory: every file of
-- DATA_DIR/tuf/<tenant>/metadata/ (N.root.json, root.json, N.targets.json, N.<bin>.json,
-- N.snapshot.json, timestamp.json, and the unversioned copies) is a row with its exact bytes and
-- their sha256 (lowercase hex). Devices are served from here; each replica keeps a local copy
-- that it brings up to date under the writer lease 'tuf:<tenant>' before signing.
CREATE TABLE tuf_metadata (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (tenant, name)
);
