//! Static delta decoder on arbitrary bytes against a small fixed seed.
//! Inputs starting with the delta magic are applied as they are (header, seed check, segments);
//! any other input gets a valid header for the fixed seed prepended so that the segment, frame
//! and op decoders are reached: input = segment_count u8, target_size u16 LE, segment bytes.
//! The same bytes also go through `scan` (segment-header walk) and `apply::parse_prefix`.
#![no_main]

use keel_delta::format::MAGIC;
use keel_delta::{apply, sha256, DeltaHeader, MAX_SEGMENT_CTRL, MAX_SEGMENT_DATA};
use libfuzzer_sys::fuzz_target;

fn fixed_seed() -> Vec<u8> {
    (0..4096u32).map(|i| (i.wrapping_mul(31) ^ (i >> 3)) as u8).collect()
}

fuzz_target!(|data: &[u8]| {
    let seed = fixed_seed();
    let delta = if data.starts_with(&MAGIC) || data.len() < 3 {
        data.to_vec()
    } else {
        let header = DeltaHeader {
            segment_count: u32::from(data[0] % 8),
            seed_size: seed.len() as u64,
            seed_sha256: sha256(&seed),
            target_size: u64::from(u16::from_le_bytes([data[1], data[2]])),
            target_sha256: [0; 32],
            max_segment_data: MAX_SEGMENT_DATA,
            max_segment_ctrl: MAX_SEGMENT_CTRL,
            zstd_frames: false,
        };
        let mut d = header.to_bytes().to_vec();
        d.extend_from_slice(&data[3..]);
        d
    };
    // The structure walk (`keel delta apply` runs it first) and the prefix parser (bundle checks).
    let _ = keel_delta::scan(&mut std::io::Cursor::new(&delta));
    let _ = keel_delta::apply::parse_prefix(&delta);
    let mut seed_reader = std::io::Cursor::new(&seed);
    let _ = apply(&mut seed_reader, &delta[..], std::io::sink());
});
