//! The integration tests of keel-agent, one binary (one link step) for the whole crate: a
//! module per subject. Run one with `cargo test -p keel-agent --test it -- <module>::`.

mod chunked_cli;
mod cli;
mod common;
mod http;
mod media;
mod peers;
mod state_dir;
mod verify;
