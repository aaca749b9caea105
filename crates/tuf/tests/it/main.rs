//! The integration tests of keel-tuf, one binary (one link step) for the whole crate: a
//! module per subject. Run one with `cargo test -p keel-tuf --test it -- <module>::`.

mod attacks;
mod python_interop;
