-- When each TUF metadata row was stored (ms since 1970, the storing replica's clock). Pruning old
-- metadata versions (docs/tuf.md, "Pruning old versions") keeps a snapshot, and what it lists,
-- until the snapshot that replaced it has been stored for longer than a timestamp stays valid.
-- Rows stored before this migration count as stored now: nothing is pruned for the first day.
ALTER TABLE tuf_metadata ADD COLUMN stored_at INTEGER NOT NULL DEFAULT 0;
UPDATE tuf_metadata SET stored_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000;
