//! Fuzzes the GRUB environment block parser, on raw bytes and with the signature prepended
//! and padded to 1024 bytes so the line parser is reached. Whatever parses and re-encodes
//! must parse back to the same variables.
#![no_main]

use keel_bootenv::grub::{GrubEnv, SIGNATURE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = GrubEnv::parse(data);

    let mut block = SIGNATURE.to_vec();
    block.extend_from_slice(data);
    if block.len() < 1024 {
        block.resize(1024, b'#');
    }
    if let Ok(env) = GrubEnv::parse(&block) {
        if let Ok(bytes) = env.to_bytes() {
            assert_eq!(GrubEnv::parse(&bytes).expect("re-encoded block parses").entries(), env.entries());
        }
    }
});
