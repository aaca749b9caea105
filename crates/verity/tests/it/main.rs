//! keel-verity's integration tests: one binary (see docs/ARCHITECTURE.md).
mod veritysetup;
