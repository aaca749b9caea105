//! Dynamic path: chunk index format, store and pack, plan and assembly (with resume).

use crate::common;

use std::io::Cursor;

use common::*;
use keel_delta::chunk::{self, ChunkIndex, ChunkParams, DirStore, PackReader, SeedChunks};
use keel_delta::DeltaError;

const PARAMS: ChunkParams = ChunkParams {
    min: 1024,
    avg: 4096,
    max: 16384,
};

/// A few localized changes (what chunking can exploit; scattered byte flips defeat any chunker).
fn local_edits(r: &mut rand::rngs::StdRng, old: &[u8]) -> Vec<u8> {
    use rand::Rng;
    let mut new = old.to_vec();
    for _ in 0..4 {
        let at = r.gen_range(0..new.len());
        let len = r.gen_range(1..3000);
        new.splice(at..at, texty(r, len));
    }
    let at = r.gen_range(0..new.len() - 5000);
    new.drain(at..at + 5000);
    new
}

fn index_with_store(image: &[u8], store: &DirStore) -> ChunkIndex {
    ChunkIndex::build(image, PARAMS, 3, |entry, data| store.put(&entry.id, data))
        .expect("build index")
}

#[test]
fn index_round_trips_and_rejects_corruption() {
    let mut r = rng(20);
    let image = texty(&mut r, 100_000);
    let index = ChunkIndex::build(&image[..], PARAMS, 3, |_, _| Ok(())).expect("build");
    assert_eq!(index.image_size, image.len() as u64);
    assert_eq!(index.image_sha256, keel_delta::sha256(&image));
    let bytes = index.to_bytes();
    assert_eq!(ChunkIndex::from_bytes(&bytes).expect("parse"), index);
    for at in (0..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        assert!(
            ChunkIndex::from_bytes(&bad).is_err(),
            "flip at {at} accepted"
        );
    }
    for len in [0, 10, 75, bytes.len() - 1] {
        assert!(ChunkIndex::from_bytes(&bytes[..len]).is_err());
    }
    let empty = ChunkIndex::build(&b""[..], PARAMS, 3, |_, _| Ok(())).expect("empty");
    assert_eq!(
        ChunkIndex::from_bytes(&empty.to_bytes()).expect("parse empty"),
        empty
    );
}

#[test]
fn assemble_from_store_reuses_seed_and_fetches_only_changes() {
    let mut r = rng(21);
    let old = random_bytes(&mut r, 400_000);
    let new = local_edits(&mut r, &old);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = DirStore::new(dir.path());
    let index = index_with_store(&new, &store);
    let seed = SeedChunks::scan(&old[..], index.params).expect("scan");
    let plan = chunk::plan(&index, &seed);
    let total_comp: u64 = index.chunks.iter().map(|c| u64::from(c.comp_len)).sum();
    assert!(
        plan.fetch_bytes * 2 < total_comp,
        "fetch {} of {total_comp}",
        plan.fetch_bytes
    );
    assert!(plan.seed_bytes > new.len() as u64 / 2);
    let mut out = Cursor::new(Vec::new());
    let report = chunk::assemble(&index, &plan, &mut Cursor::new(&old), &mut store, &mut out)
        .expect("assemble");
    assert!(out.into_inner() == new);
    assert_eq!(report.fetched_chunks, plan.fetch_chunks);
    assert_eq!(report.fetched_bytes, plan.fetch_bytes);

    // The installed image's stored index works as a seed map too (no scan).
    let old_index = ChunkIndex::build(&old[..], PARAMS, 3, |_, _| Ok(())).expect("old index");
    let plan2 = chunk::plan(&index, &SeedChunks::from_index(&old_index));
    assert_eq!(plan2.fetch_bytes, plan.fetch_bytes);
}

#[test]
fn assemble_from_pack_and_resume_a_half_written_target() {
    let mut r = rng(22);
    let old = texty(&mut r, 300_000);
    let new = edited(&mut r, &old);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = DirStore::new(dir.path());
    let index = index_with_store(&new, &store);
    let mut pack = Vec::new();
    chunk::write_pack(&index, &mut store, &mut pack).expect("pack");
    let plan = chunk::plan(
        &index,
        &SeedChunks::scan(&old[..], index.params).expect("scan"),
    );

    // Half of the target already written by an interrupted run, the rest garbage.
    let mut half = new.clone();
    let cut = new.len() / 2;
    for b in &mut half[cut..] {
        *b = 0x5A;
    }
    let mut reader = PackReader {
        pack: Cursor::new(pack.clone()),
        bytes_read: 0,
    };
    let mut out = Cursor::new(half);
    let report = chunk::assemble(&index, &plan, &mut Cursor::new(&old), &mut reader, &mut out)
        .expect("resume");
    assert!(out.into_inner() == new);
    assert!(
        report.already_in_target as usize >= index.chunks.len() / 3,
        "{report:?}"
    );
    assert!(report.fetched_bytes <= plan.fetch_bytes);

    // A fresh run reading the pack.
    let mut reader = PackReader {
        pack: Cursor::new(pack),
        bytes_read: 0,
    };
    let mut out = Cursor::new(Vec::new());
    chunk::assemble(&index, &plan, &mut Cursor::new(&old), &mut reader, &mut out).expect("fresh");
    assert!(out.into_inner() == new);
    assert_eq!(reader.bytes_read, plan.fetch_bytes);
}

#[test]
fn tampered_chunk_or_changed_seed_is_caught() {
    let mut r = rng(23);
    let old = random_bytes(&mut r, 200_000);
    let new = edited(&mut r, &old);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = DirStore::new(dir.path());
    let index = index_with_store(&new, &store);
    let plan = chunk::plan(
        &index,
        &SeedChunks::scan(&old[..], index.params).expect("scan"),
    );

    // The seed changed after planning (a RW slot): seed chunks are re-hashed and fetched instead.
    let mut changed = old.clone();
    for b in changed.iter_mut().step_by(10_000) {
        *b ^= 0xFF;
    }
    let mut out = Cursor::new(Vec::new());
    let report = chunk::assemble(
        &index,
        &plan,
        &mut Cursor::new(&changed),
        &mut store,
        &mut out,
    )
    .expect("fallback");
    assert!(report.seed_mismatches > 0);
    assert!(out.into_inner() == new);

    // A chunk in the store whose content does not match its id.
    let fetched = plan
        .sources
        .iter()
        .find_map(|s| match s {
            chunk::ChunkSource::Fetch(req) => Some(req.id),
            _ => None,
        })
        .expect("some chunk to fetch");
    let wrong = zstd::bulk::compress(b"not the chunk", 3).expect("compress");
    std::fs::write(store.chunk_path(&fetched), wrong).expect("tamper");
    let result = chunk::assemble(
        &index,
        &plan,
        &mut Cursor::new(&old),
        &mut store,
        &mut Cursor::new(Vec::new()),
    );
    assert!(
        matches!(result, Err(DeltaError::Chunk { .. })),
        "{result:?}"
    );
}
