//! The integration tests of keel-bootenv, one binary (one link step) for the whole crate: a
//! module per subject. Run one with `cargo test -p keel-bootenv --test it -- <module>::`.

mod common;
mod corrupt;
mod interop_ebg;
mod interop_grub;
mod interop_uboot;
mod power_cut;
mod repair;
mod sim_model;
mod vectors;
