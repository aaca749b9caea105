//! The integration tests of keel-sim, one binary (one link step) for the whole crate: a
//! module per subject. Run one with `cargo test -p keel-sim --test it -- <module>::`.

mod chunked;
mod common;
mod delta;
mod description;
mod e2e;
mod loaders;
mod powercut;
