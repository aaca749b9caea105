//! The integration tests of keel-tuf-repo, one binary (one link step) for the whole crate: a
//! module per subject. Run one with `cargo test -p keel-tuf-repo --test it -- <module>::`.

mod python_ngclient;
mod vectors;
