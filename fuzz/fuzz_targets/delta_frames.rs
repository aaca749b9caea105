//! zstd-frame deltas: the frame layout parser, the expanded seed reader and the re-framer, on
//! arbitrary bytes against a small fixed seed holding two zstd frames.
//! Input: `seed_count u8, target_count u8, body_len u8, seed_expanded u16, target_size u16,
//! target_expanded u16, segment_count u8, body[body_len], segments…`: the delta header and the
//! layout header (this build's zstd version, valid checksums) are made from these fields so that
//! the body parser, the seed expansion and the segments are reached. (Whole deltas as they are:
//! the delta_apply target.)
//!
//! Target frame levels 11..=22 in the body are mapped to 1..=10 before use (btopt, the strategy
//! at issue, starts at level 11 for frames up to 16 KiB; the first version of this target lowered
//! only 16..=22 and the 2026-12-08 campaign hit the report below at level 11): zstd-sys 2.0.9 builds
//! zstd with `-fmerge-all-constants`, which makes AddressSanitizer report a false
//! stack-use-after-scope in zstd's btopt match finder (`ZSTD_selectBtGetAllMatches`, a constant
//! table merged into a global; zstd-sys dropped the flag for this reason, its issue #398). The
//! parser's level checks (0, > 22, negative) are still reached.
#![no_main]

use keel_delta::frames::{zstd_version, LAYOUT_MAGIC};
use keel_delta::{apply, sha256, DeltaHeader, MAX_SEGMENT_CTRL, MAX_SEGMENT_DATA};
use libfuzzer_sys::fuzz_target;

/// A zstd frame of one raw (stored) block: single segment, 2-byte content size (256..=65791).
fn raw_frame(content: &[u8]) -> Vec<u8> {
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x60];
    f.extend_from_slice(&((content.len() - 256) as u16).to_le_bytes());
    let block = 1u32 | ((content.len() as u32) << 3);
    f.extend_from_slice(&block.to_le_bytes()[..3]);
    f.extend_from_slice(content);
    f
}

fn pattern(len: usize, mul: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(mul) ^ (i >> 3)) as u8).collect()
}

/// 300 raw bytes, a frame of 1000, 200 raw, a frame of 700, 100 raw (2300 bytes expanded).
fn fixed_seed() -> Vec<u8> {
    let mut s = pattern(300, 31);
    s.extend(raw_frame(&pattern(1000, 7)));
    s.extend(pattern(200, 13));
    s.extend(raw_frame(&pattern(700, 5)));
    s.extend(pattern(100, 3));
    s
}

fuzz_target!(|data: &[u8]| {
    let seed = fixed_seed();
    if data.len() < 10 {
        return;
    }
    let delta = {
        let u16_at = |at: usize| u64::from(u16::from_le_bytes([data[at], data[at + 1]]));
        let body_len = usize::from(data[2]).min(data.len() - 10);
        let header = DeltaHeader {
            segment_count: u32::from(data[9] % 8),
            seed_size: seed.len() as u64,
            seed_sha256: sha256(&seed),
            target_size: u16_at(5),
            target_sha256: [0; 32],
            max_segment_data: MAX_SEGMENT_DATA,
            max_segment_ctrl: MAX_SEGMENT_CTRL,
            zstd_frames: true,
        };
        let mut d = header.to_bytes().to_vec();
        let mut layout = LAYOUT_MAGIC.to_vec();
        layout.extend_from_slice(&zstd_version().to_le_bytes());
        layout.extend_from_slice(&u16_at(3).to_le_bytes());
        layout.extend_from_slice(&u16_at(7).to_le_bytes());
        layout.extend_from_slice(&u32::from(data[0] % 4).to_le_bytes());
        layout.extend_from_slice(&u32::from(data[1] % 4).to_le_bytes());
        let body = without_btopt_levels(&data[10..10 + body_len], data[0] % 4);
        layout.extend_from_slice(&(body.len() as u32).to_le_bytes());
        let crc = crc32(&layout);
        layout.extend_from_slice(&crc.to_le_bytes());
        layout.extend_from_slice(&body);
        layout.extend_from_slice(&crc32(&body).to_le_bytes());
        d.extend_from_slice(&layout);
        d.extend_from_slice(&data[10 + body_len..]);
        d
    };
    let mut seed_reader = std::io::Cursor::new(&seed);
    let _ = apply(&mut seed_reader, &delta[..], std::io::sink());
});

fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The body with target levels 11..=22 (zigzag 22..=44) mapped to 1..=10: for frames of at most
/// 16 KiB (all of this target's), zstd picks its btopt strategy from level 11 on; bytes that do
/// not decode are kept as they are.
fn without_btopt_levels(body: &[u8], seed_entries: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut pos = 0;
    let mut index = 0usize;
    let seed_varints = 3 * usize::from(seed_entries);
    while pos < body.len() {
        let start = pos;
        let Some(v) = get_varint(body, &mut pos) else {
            out.extend_from_slice(&body[start..]);
            break;
        };
        let is_level = index >= seed_varints && (index - seed_varints) % 4 == 1;
        let lowered = if is_level && (22..=44).contains(&v) && v % 2 == 0 {
            2 * ((v / 2 - 11) % 10 + 1)
        } else {
            v
        };
        put_varint(&mut out, lowered);
        index += 1;
    }
    out
}

/// CRC-32 (IEEE), bitwise: the fuzz crate has no crc32 dependency of its own.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
