-- Static deltas that recompress zstd frames (docs/delta-format.md, "zstd frames") are bit-exact
-- only with the zstd version they name: the `zstd-frames` property of their keel-delta entries.
--   zstd_frames  JSON array of the distinct zstd-frames values of the bundle's keel-delta images
--                (empty: no framed delta); the device must report each as `keel.delta.zstd`.
-- Bundles classified before this migration count as unframed.
ALTER TABLE artifact_variants ADD COLUMN zstd_frames TEXT NOT NULL DEFAULT '[]';
