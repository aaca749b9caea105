//! The integration tests of keel-cli, one binary (one link step) for the whole crate: a
//! module per subject. Run one with `cargo test -p keel-cli --test it -- <module>::`.

mod bundle_cli;
mod delta_cli;
mod fleet_cli;
mod image_cli;
mod tuf_cli;
