//! The integration tests of keel-delta, one binary (one link step) for the whole crate: a
//! module per subject. Run one with `cargo test -p keel-delta --test it -- <module>::`.

mod chunks;
mod common;
mod real_images;
mod static_delta;
mod vectors;
mod zstd_frames;
