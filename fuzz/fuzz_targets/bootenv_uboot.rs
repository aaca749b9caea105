//! Fuzzes the U-Boot environment decoder (single and redundant) and the fw_env.config
//! parser. The first byte picks the layout; the CRC is also fixed up so the entry parser is
//! reached. Whatever decodes must re-encode and decode back to the same variables.
#![no_main]

use keel_bootenv::crc::crc32;
use keel_bootenv::uboot::{decode_copy, encode_copy, FwEnvConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let redundant = mode & 1 == 1;
    let _ = decode_copy(rest, redundant);
    let _ = FwEnvConfig::parse(&String::from_utf8_lossy(rest));

    let header = if redundant { 5 } else { 4 };
    if rest.len() > header {
        let mut fixed = rest.to_vec();
        let crc = crc32(&fixed[header..]);
        fixed[..4].copy_from_slice(&crc.to_le_bytes());
        if let Ok(copy) = decode_copy(&fixed, redundant) {
            if let Ok(bytes) = encode_copy(&copy.vars, fixed.len(), copy.flags) {
                assert_eq!(decode_copy(&bytes, redundant).expect("re-encoded copy decodes"), copy);
            }
        }
    }
});
