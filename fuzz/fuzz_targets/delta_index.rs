//! Chunk index parser on arbitrary bytes; a parsed index must re-serialise to the same bytes
//! and plan against a small seed without panicking.
#![no_main]

use keel_delta::chunk::{plan, ChunkIndex, SeedChunks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = ChunkIndex::from_bytes(data) {
        assert_eq!(index.to_bytes(), data);
        let seed: Vec<u8> = (0..8192u32).map(|i| (i * 7 >> 2) as u8).collect();
        if let Ok(seed_chunks) = SeedChunks::scan(&seed[..], index.params) {
            let p = plan(&index, &seed_chunks);
            assert_eq!(p.sources.len(), index.chunks.len());
        }
    }
});
