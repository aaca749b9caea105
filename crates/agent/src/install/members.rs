//! Step 4 and 5 of an install: the bundle's members after the description, in bundle order.
//! Scripts are kept (hash-checked) until they run; images stream into their targets; members of
//! other selections are skipped; the bundle is read to its very end before anything is activated.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::PathBuf;

use keel_formats::swdesc::hex;
use keel_formats::swu::SwuReader;
use keel_sign::aes::AesKey;

use super::error::{InstallError, StructureError};
use super::plan::Plan;
use super::scripts::{run_scripts, Stage};
use super::stream::{read_small, HashingReader, Progress};
use super::{ChunkedStats, InstallOptions, SlotPair, MAX_SCRIPT_SIZE, MAX_TRAILING_BYTES};
use crate::agent::Agent;
use crate::chunks::PackSource;
use crate::state::SlotImage;

/// Writes the members of one bundle into the target slot.
pub(super) struct Writer<'a, 'o> {
    pub agent: &'a Agent,
    pub plan: &'a Plan,
    pub slots: SlotPair,
    pub key: Option<&'a AesKey>,
    /// Bytes per write to the slot.
    pub chunk_size: usize,
    pub progress: Progress<'o>,
    pub packs: &'a PackSource,
    /// What the state file says the booted slot's targets hold (seeds of chunked images).
    pub seed_records: &'a BTreeMap<String, SlotImage>,
    pub chunked: ChunkedStats,
    /// Script bodies found so far (hash-checked).
    scripts: BTreeMap<String, Vec<u8>>,
    /// Per planned image: what its target holds once written.
    written: Vec<Option<SlotImage>>,
    /// (member, target, bytes written) in bundle order.
    report: Vec<(String, PathBuf, u64)>,
    pre_scripts_run: bool,
}

/// What the members wrote.
pub(super) struct Written {
    /// Per planned image: what its target holds.
    pub written: Vec<Option<SlotImage>>,
    pub report: Vec<(String, PathBuf, u64)>,
    pub chunked: ChunkedStats,
}

impl<'a, 'o> Writer<'a, 'o> {
    pub fn new(
        agent: &'a Agent,
        plan: &'a Plan,
        slots: SlotPair,
        key: Option<&'a AesKey>,
        options: &'a mut InstallOptions<'o>,
        seed_records: &'a BTreeMap<String, SlotImage>,
    ) -> Writer<'a, 'o> {
        Writer {
            agent,
            plan,
            slots,
            key,
            chunk_size: options.chunk_size.unwrap_or(64 * 1024).max(512),
            progress: Progress::new(options.progress.take()),
            packs: &options.packs,
            seed_records,
            chunked: ChunkedStats::default(),
            scripts: BTreeMap::new(),
            written: vec![None; plan.images.len()],
            report: Vec::new(),
            pre_scripts_run: false,
        }
    }

    /// Every member up to the cpio trailer, then the rest of the source.
    pub fn all_members<R: Read>(&mut self, swu: &mut SwuReader<R>) -> Result<(), InstallError> {
        let mut seen = BTreeSet::new();
        while let Some(mut member) = swu.next_member()? {
            let name = member.name.clone();
            if !seen.insert(name.clone()) {
                return Err(StructureError::Duplicate(name).into());
            }
            let size = member.size;
            self.member(&name, size, &mut member)?;
        }
        // Read the source to its end (the cpio padding after the trailer) before activating:
        // a verifying source (TUF, docs/tuf.md: whole-artifact length and hashes) reports a
        // mismatch only at its end, and that must fail the install while the target is still
        // unbootable.
        let mut rest = swu.get_mut().take(MAX_TRAILING_BYTES + 1);
        let trailing = io::copy(&mut rest, &mut io::sink()).map_err(StructureError::End)?;
        if trailing > MAX_TRAILING_BYTES {
            return Err(StructureError::Trailing(MAX_TRAILING_BYTES).into());
        }
        Ok(())
    }

    fn member(&mut self, name: &str, size: u64, member: &mut dyn Read) -> Result<(), InstallError> {
        if let Some(script) = self.plan.scripts.iter().find(|s| s.name == name) {
            let mut hashing = HashingReader::new(member);
            let body = read_small(&mut hashing, MAX_SCRIPT_SIZE)
                .map_err(|e| InstallError::image(name, e))?;
            check_hash(name, &script.sha256, hashing.finish())?;
            self.scripts.insert(name.to_string(), body);
            return Ok(());
        }
        let Some(index) = self.plan.images.iter().position(|i| i.name == name) else {
            // A member of another selection (e.g. copy1 while installing copy2): skip it.
            io::copy(member, &mut io::sink()).map_err(|e| InstallError::image(name, e))?;
            return Ok(());
        };
        if !self.pre_scripts_run {
            self.run_scripts(Stage::Pre)?;
            self.pre_scripts_run = true;
        }
        self.progress.announce(size);
        let image = &self.plan.images[index];
        let (record, bytes) = self.image(image, member)?;
        self.report
            .push((name.to_string(), image.target.clone(), bytes));
        if let Some(slot) = self.written.get_mut(index) {
            *slot = Some(record);
        }
        Ok(())
    }

    fn run_scripts(&self, stage: Stage) -> Result<(), InstallError> {
        let targets = &self.agent.config.slots.get(self.slots.target).targets;
        run_scripts(
            &self.plan.scripts,
            &self.scripts,
            stage,
            self.slots,
            targets,
        )
    }

    /// After the last member: every image written, then the scripts.
    pub fn finish(self) -> Result<Written, InstallError> {
        let missing: Vec<&str> = self
            .plan
            .images
            .iter()
            .zip(&self.written)
            .filter(|(_, w)| w.is_none())
            .map(|(i, _)| i.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(InstallError::Missing(missing.join(", ")));
        }
        if !self.pre_scripts_run {
            self.run_scripts(Stage::Pre)?;
        }
        self.run_scripts(Stage::Post)?;
        Ok(Written {
            written: self.written,
            report: self.report,
            chunked: self.chunked,
        })
    }
}

/// The signed hash of a member against the hash of the bytes read.
pub(super) fn check_hash(
    name: &str,
    expected: &[u8; 32],
    actual: [u8; 32],
) -> Result<(), InstallError> {
    if actual == *expected {
        return Ok(());
    }
    Err(InstallError::HashMismatch {
        name: name.to_string(),
        expected: hex(expected),
        actual: hex(&actual),
    })
}
