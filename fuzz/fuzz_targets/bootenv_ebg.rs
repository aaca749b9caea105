//! Fuzzes the EFI Boot Guard BGENV.DAT parser: arbitrary bytes as a whole file (size and CRC
//! checks), and the same bytes laid into a correctly sized image decoded without the CRC
//! gate (so the fuzzer reaches the field and user-variable decoding). Parsing must never
//! panic, and whatever decodes must re-encode to bytes that parse back to the same
//! environment.
#![no_main]

use keel_bootenv::ebg::{BgEnv, ENV_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = BgEnv::parse(data);
    let _ = BgEnv::parse_unchecked(data);

    let mut image = vec![0u8; ENV_SIZE];
    let n = data.len().min(ENV_SIZE - 4);
    image[..n].copy_from_slice(&data[..n]);
    if let Ok(env) = BgEnv::parse_unchecked(&image) {
        let bytes = env.to_bytes().expect("a parsed environment re-encodes");
        assert_eq!(BgEnv::parse(&bytes).expect("re-encoded environment parses"), env);
        for var in &env.uservars {
            let _ = var.display_value();
        }
    }
});
