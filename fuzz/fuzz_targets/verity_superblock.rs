//! The verity superblock parser and the verifier over an untrusted hash device: any bytes give
//! an error or a result, never a panic, and a parsed superblock writes back to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sb) = keel_verity::Superblock::parse(data) else {
        return;
    };
    let bytes = sb.to_bytes().expect("a parsed superblock is writable");
    assert_eq!(keel_verity::Superblock::parse(&bytes).expect("round trip"), sb);
    // The same bytes as a whole hash device, over a small data image: tree offsets and sizes
    // come from the untrusted superblock.
    let image = [0u8; 16 * 1024];
    let _ = keel_verity::verify(&mut &image[..], data, &[0u8; 32], 1);
});
