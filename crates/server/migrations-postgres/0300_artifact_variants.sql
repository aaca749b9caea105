-- Bundle variants (docs/ddi.md, "Delta and dynamic bundles"): on upload, a .swu artifact is
-- classified by its sw-description (not its signature: the device checks that).
--   variant  'full' | 'delta' (keel-delta images: needs the device's slot to hold a source) |
--            'chunked' (keel-chunked images: chunk index in the bundle, pack beside it)
--   sources  JSON array of the source-sha256 of every keel-delta image
--   packs    JSON array of the pack file names of every keel-chunked image
-- Artifacts that are not .swu bundles have no row.
CREATE TABLE artifact_variants (
    artifact_id BIGINT PRIMARY KEY REFERENCES artifacts(id) ON DELETE CASCADE,
    variant TEXT COLLATE "C" NOT NULL,
    sources TEXT COLLATE "C" NOT NULL,
    packs TEXT COLLATE "C" NOT NULL
);
