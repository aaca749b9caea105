//! The test vectors printed in docs/delta-format.md: encoder output is byte-exact and the
//! documented bytes decode to the documented target.

use std::io::Cursor;

use keel_delta::chunk::{ChunkIndex, ChunkParams};
use keel_delta::{apply, create, hex, CreateOptions};

fn seed() -> Vec<u8> {
    b"keel delta test vector: the quick brown fox jumps over the lazy dog\n".repeat(3)
}

fn target() -> Vec<u8> {
    let mut t = seed();
    t.splice(128..132, b"sleepy".iter().copied());
    t.extend_from_slice(b"a new line\n");
    t
}

/// The vector files wrap their hex digits over several lines.
fn unhex(s: &str) -> Vec<u8> {
    ::hex::decode(s.split_whitespace().collect::<String>()).expect("hex")
}

const DELTA_HEX: &str = include_str!("../vectors/delta-v1.hex");
const INDEX_HEX: &str = include_str!("../vectors/index-v1.hex");

#[test]
fn static_delta_vector() {
    let opts = CreateOptions {
        level: 3,
        copy_min: 16,
        ..CreateOptions::default()
    };
    let mut delta = Vec::new();
    create(&seed(), &target(), &opts, &mut delta).expect("create");
    assert_eq!(
        hex(&delta),
        DELTA_HEX.split_whitespace().collect::<String>()
    );
    let mut out = Vec::new();
    apply(&mut Cursor::new(seed()), &unhex(DELTA_HEX)[..], &mut out).expect("apply vector");
    assert_eq!(out, target());
}

#[test]
fn chunk_index_vector() {
    let image: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let params = ChunkParams {
        min: 256,
        avg: 1024,
        max: 4096,
    };
    let index = ChunkIndex::build(&image[..], params, 3, |_, _| Ok(())).expect("index");
    assert_eq!(
        hex(&index.to_bytes()),
        INDEX_HEX.split_whitespace().collect::<String>()
    );
    assert_eq!(
        ChunkIndex::from_bytes(&unhex(INDEX_HEX)).expect("parse"),
        index
    );
}

/// `ZSTD_compress(content, 3)` (what mksquashfs does per block, at its level).
fn zstd_frame(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(content.len()));
    zstd::zstd_safe::compress(&mut out, content, 3).expect("compress");
    out
}

fn frame_text(animal: &str) -> Vec<u8> {
    let mut t = b"keel zstd frame vector: the quick brown fox jumps over the lazy dog\n".repeat(4);
    t.extend_from_slice(format!("the {animal} sleeps\n").as_bytes());
    t
}

fn framed_seed() -> Vec<u8> {
    [&b"HEAD"[..], &zstd_frame(&frame_text("dog")), b"TAIL"].concat()
}

fn framed_target() -> Vec<u8> {
    [&b"HEAD"[..], &zstd_frame(&frame_text("cat")), b"TAIL"].concat()
}

const FRAMES_HEX: &str = include_str!("../vectors/delta-zstd-frames.hex");

#[test]
fn zstd_frames_delta_vector() {
    let opts = CreateOptions {
        level: 3,
        copy_min: 16,
        ..CreateOptions::default()
    };
    let mut delta = Vec::new();
    let report = create(&framed_seed(), &framed_target(), &opts, &mut delta).expect("create");
    assert_eq!(report.target_frames, 1, "{report:?}");
    assert_eq!(
        hex(&delta),
        FRAMES_HEX.split_whitespace().collect::<String>()
    );
    let mut out = Vec::new();
    apply(
        &mut Cursor::new(framed_seed()),
        &unhex(FRAMES_HEX)[..],
        &mut out,
    )
    .expect("apply vector");
    assert_eq!(out, framed_target());
}
