//! The integration tests of keel-bundle, one binary (one link step) for the whole crate: a
//! module per subject. Run one with `cargo test -p keel-bundle --test it -- <module>::`.

mod common;
mod delta_entries;
mod handmade_bundle;
mod limits;
mod member_order;
mod reproducible;
mod swupdate_interop;
mod tamper;
