//! `keel-chunked` images on simulated devices: the image is assembled in the inactive slot from
//! chunks of the booted slot and a pack file; a corrupted pack chunk fails the install before
//! activation; and a power cut at every storage operation of the install (every chunk write,
//! every sync, every env and state write) never leaves a torn slot bootable, while the
//! restarted install finishes, keeping the chunks the cut install had already written.

use crate::common;

use common::{image, starts_with, Fixture};
use keel_agent::chunks::PackSource;
use keel_agent::install::ImageError;
use keel_agent::{InstallError, InstallOptions, SlotId};
use keel_delta::chunk::{ChunkIndex, ChunkParams};
use keel_sim::{CutMode, Loader, SimDevice};

/// Small chunks for small test images.
const PARAMS: ChunkParams = ChunkParams {
    min: 1024,
    avg: 4096,
    max: 16384,
};

struct Chunked {
    bundle: Vec<u8>,
    pack: Vec<u8>,
    index: ChunkIndex,
}

/// A bundle whose rootfs is `new` as a chunk index, and the matching pack.
fn chunked_release(fx: &Fixture, new: &[u8]) -> Chunked {
    let mut pack = Vec::new();
    let index = ChunkIndex::build(new, PARAMS, 3, |_, compressed| {
        pack.extend_from_slice(compressed);
        Ok(())
    })
    .unwrap();
    let manifest = format!(
        "[software]\nversion = \"2.0\"\n[[software.images]]\nfilename = \"rootfs.kidx\"\ndevice = \"rootfs\"\n\
         type = \"keel-chunked\"\n[software.images.properties]\ntarget-sha256 = \"{}\"\n\
         target-size = \"{}\"\npack = \"rootfs.kpack\"\n",
        keel_delta::hex(&index.image_sha256),
        index.image_size
    );
    let bundle = fx.bundle_manifest(&manifest, &[("rootfs.kidx", &index.to_bytes())]);
    Chunked {
        bundle,
        pack,
        index,
    }
}

/// The factory rootfs of slot A with a few regions rewritten and a tail appended.
fn next_version(seed: &[u8]) -> Vec<u8> {
    let mut new = seed[..200 * 1024].to_vec();
    new[10_000..14_000].copy_from_slice(&image(41, 4000));
    new[120_000..121_000].copy_from_slice(&image(42, 1000));
    new.extend_from_slice(&image(43, 20_000));
    new
}

fn install(
    device: &SimDevice,
    bundle: &[u8],
    pack: &std::path::Path,
) -> Result<keel_agent::InstallReport, InstallError> {
    device.agent().unwrap().install(
        bundle,
        InstallOptions {
            packs: PackSource::File(pack.to_path_buf()),
            ..Default::default()
        },
    )
}

#[test]
fn chunked_image_reuses_the_booted_slot_and_fetches_the_rest() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Ebg);
    let seed = device.slot_contents(SlotId::A, "rootfs");
    let new = next_version(&seed);
    let release = chunked_release(&fx, &new);
    let pack_path = fx.dir.path().join("rootfs.kpack");
    std::fs::write(&pack_path, &release.pack).unwrap();

    let report = install(&device, &release.bundle, &pack_path).unwrap();
    assert!(starts_with(
        &device.slot_contents(SlotId::B, "rootfs"),
        &new
    ));
    assert_eq!(device.slot_contents(SlotId::A, "rootfs"), seed);
    let c = &report.chunked;
    assert_eq!(c.image_bytes, new.len() as u64);
    assert!(c.seed_chunks > 0 && c.fetched_chunks > 0, "{c:?}");
    // Only the changed regions and the new tail travel: far less than the image.
    assert!(
        c.fetched_bytes * 4 < new.len() as u64,
        "fetched {} of {} bytes",
        c.fetched_bytes,
        new.len()
    );
    assert!(c.fetched_bytes < release.pack.len() as u64);
    assert_eq!(device.boot().unwrap().slot, SlotId::B);
    device.agent().unwrap().confirm(None).unwrap();
    // The state file knows what slot B holds now (reported to the server as configData).
    let state = device.agent().unwrap().load_state().unwrap();
    let record = &state.slots[&SlotId::B]["rootfs"];
    assert_eq!(record.sha256, keel_delta::hex(&release.index.image_sha256));
    assert_eq!(record.size, new.len() as u64);
    assert_eq!(record.version.as_deref(), Some("2.0"));
}

#[test]
fn next_chunked_update_uses_the_kept_index_of_the_booted_slot() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Ebg);
    let seed = device.slot_contents(SlotId::A, "rootfs");
    let v2 = next_version(&seed);
    let first = chunked_release(&fx, &v2);
    let pack_path = fx.dir.path().join("rootfs.kpack");
    std::fs::write(&pack_path, &first.pack).unwrap();
    let report = install(&device, &first.bundle, &pack_path).unwrap();
    // Slot A was never written by the agent: its seed had to be scanned.
    assert_eq!(report.chunked.kept_indexes, 0);
    assert_eq!(device.boot().unwrap().slot, SlotId::B);
    device.agent().unwrap().confirm(None).unwrap();

    // 3.0 from slot B: its chunks are known from the index kept by the install of 2.0.
    let mut v3 = v2.clone();
    v3[30_000..31_000].copy_from_slice(&image(44, 1000));
    let second = chunked_release(&fx, &v3);
    std::fs::write(&pack_path, &second.pack).unwrap();
    let report = install(&device, &second.bundle, &pack_path).unwrap();
    assert_eq!(report.target, SlotId::A);
    assert_eq!(report.chunked.kept_indexes, 1);
    assert!(report.chunked.seed_chunks > 0);
    assert!(report.chunked.fetched_bytes * 4 < v3.len() as u64);
    assert!(starts_with(&device.slot_contents(SlotId::A, "rootfs"), &v3));
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
}

#[test]
fn corrupted_pack_chunk_is_never_activated() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Uboot);
    let seed = device.slot_contents(SlotId::A, "rootfs");
    let release = chunked_release(&fx, &next_version(&seed));
    // Flip a byte in the last chunk of the pack (the appended tail: always fetched).
    let mut pack = release.pack.clone();
    let last = pack.len() - 10;
    pack[last] ^= 0x55;
    let pack_path = fx.dir.path().join("rootfs.kpack");
    std::fs::write(&pack_path, &pack).unwrap();
    let err = install(&device, &release.bundle, &pack_path).unwrap_err();
    assert!(
        matches!(
            &err,
            InstallError::Image {
                source: ImageError::Chunked(_),
                ..
            }
        ) && err.to_string().contains("chunk"),
        "{err}"
    );
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
    let status = device.agent().unwrap().status().unwrap();
    let last = status.last_result.unwrap();
    assert_eq!(last.outcome, keel_agent::state::Outcome::Failed);

    // A missing pack fails the same way.
    let err = install(&device, &release.bundle, &fx.dir.path().join("nope.kpack")).unwrap_err();
    assert!(err.to_string().contains("nope.kpack"), "{err}");
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
}

#[test]
fn index_that_does_not_match_the_signed_target_hash_is_refused() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Grub);
    let seed = device.slot_contents(SlotId::A, "rootfs");
    let new = next_version(&seed);
    let mut pack = Vec::new();
    let index = ChunkIndex::build(&new[..], PARAMS, 3, |_, c| {
        pack.extend_from_slice(c);
        Ok(())
    })
    .unwrap();
    let manifest = format!(
        "[software]\nversion = \"2.0\"\n[[software.images]]\nfilename = \"rootfs.kidx\"\ndevice = \"rootfs\"\n\
         type = \"keel-chunked\"\n[software.images.properties]\ntarget-sha256 = \"{}\"\npack = \"rootfs.kpack\"\n",
        keel_delta::hex(&[7u8; 32])
    );
    let bundle = fx.bundle_manifest(&manifest, &[("rootfs.kidx", &index.to_bytes())]);
    let pack_path = fx.dir.path().join("rootfs.kpack");
    std::fs::write(&pack_path, &pack).unwrap();
    let before = device.storage.ops_done();
    let err = install(&device, &bundle, &pack_path).unwrap_err();
    assert!(err.to_string().contains("target-sha256"), "{err}");
    // Nothing of the image was written (only the state file and the env's "unbootable" step).
    assert!(device.storage.ops_done() - before < 20);
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
}

/// Power cut after every n-th storage operation of a chunked install, in every cut mode: the
/// device boots a complete slot (A; B only once activated, then complete), and installing again
/// finishes — reusing what the interrupted run had written — and boots the new image.
#[test]
fn power_cut_at_every_point_of_a_chunked_install_then_the_restarted_install_finishes() {
    let fx = Fixture::new();
    let reference = fx.device(Loader::Ebg);
    let seed = reference.slot_contents(SlotId::A, "rootfs");
    let new = next_version(&seed);
    let release = chunked_release(&fx, &new);
    let pack_path = fx.dir.path().join("rootfs.kpack");
    std::fs::write(&pack_path, &release.pack).unwrap();
    let (result, total) = reference.count_ops(|| install(&reference, &release.bundle, &pack_path));
    let clean = result.unwrap();
    assert!(total > 10, "{total} operations");

    let mut resumed_with_kept_chunks = 0;
    let mut tried = 0;
    // The deterministic modes and the seeded ones (an unreadable sector of the last write —
    // in slot B, which the restart reads back for chunks to keep — torn sectors, reordered
    // writes).
    let modes = CutMode::all_with_seeds(&[1]);
    let factory = fx.device(Loader::Ebg);
    for n in 0..total {
        for &mode in &modes {
            let mut device = factory.fork();
            let (result, cut) =
                device.with_power_cut(n, mode, |d| install(d, &release.bundle, &pack_path));
            assert!(cut, "cut after {n}/{total} ops did not happen");
            assert!(
                result.is_err(),
                "an install that lost power reported success"
            );
            let what = format!("cut after {n}/{total} ops, {mode:?}");
            let boot = device.boot().unwrap_or_else(|e| panic!("{what}: {e}"));
            let rootfs = device.slot_contents(boot.slot, "rootfs");
            match boot.slot {
                SlotId::A => assert_eq!(rootfs, seed, "{what}: slot A changed"),
                SlotId::B => assert!(starts_with(&rootfs, &new), "{what}: torn slot B booted"),
            }
            if boot.slot == SlotId::B {
                // Activated before the cut: nothing to restart.
                tried += 1;
                continue;
            }
            // The restarted install (after the reboot) finishes and boots the new image.
            let report = install(&device, &release.bundle, &pack_path)
                .unwrap_or_else(|e| panic!("{what}: restarted install: {e}"));
            if report.chunked.kept_chunks > 0 {
                resumed_with_kept_chunks += 1;
                assert!(report.chunked.fetched_bytes <= clean.chunked.fetched_bytes);
            }
            assert!(starts_with(
                &device.slot_contents(SlotId::B, "rootfs"),
                &new
            ));
            assert_eq!(device.boot().unwrap().slot, SlotId::B, "{what}");
            tried += 1;
        }
    }
    assert_eq!(tried, total as usize * modes.len());
    println!(
        "chunked install: {total} cut points x {} modes = {tried} runs, {resumed_with_kept_chunks} \
         restarts kept chunks",
        modes.len()
    );
    // Cuts in the middle of the assembly leave chunks behind that the restart keeps.
    assert!(
        resumed_with_kept_chunks > 0,
        "no restarted install reused chunks of the interrupted one"
    );
}
