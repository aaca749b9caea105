//! The integration tests of keel-sign, one binary (one link step) for the whole crate: a
//! module per subject. Run one with `cargo test -p keel-sign --test it -- <module>::`.

mod aes_openssl;
mod cms_openssl;
mod common;
mod fuzz_seeds;
mod swupdate_cms;
