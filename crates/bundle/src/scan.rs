//! `keel bundle verify`, `inspect` and `extract`: one streaming pass over a bundle.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use keel_formats::cpio::CpioError;
use keel_formats::names::properties;
use keel_formats::swdesc::{hex, Entry, SwDescription, Syntax};
use keel_formats::swu::{SwuReader, DESCRIPTION_NAME, SIGNATURE_NAME};
use keel_sign::aes::{AesKey, DecryptWriter};
use keel_sign::Verifier;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{check_member_name, BundleError};

/// What to check and whether to extract.
#[derive(Default, Clone, Copy)]
pub struct ScanOptions<'a> {
    /// Trusted certificates: the signature must verify against them (an unsigned bundle fails).
    /// `None`: the signature is not checked.
    pub verifier: Option<&'a Verifier>,
    /// Extract members into this directory (only members whose hash verified are kept).
    pub extract_to: Option<&'a Path>,
    /// Decrypt encrypted members when extracting.
    pub aes_key: Option<&'a AesKey>,
}

/// Signature facts.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SignatureReport {
    /// Whether the bundle has a `sw-description.sig` member right after `sw-description`.
    pub present: bool,
    /// Size of the signature member in bytes, if present.
    pub size: Option<usize>,
    /// Whether it was checked (a certificate was given) and verified.
    pub verified: bool,
    /// Subject of the signer certificate (RFC 4514); only when verified.
    pub signer_subject: Option<String>,
    /// Issuer of the signer certificate (RFC 4514); only when verified.
    pub signer_issuer: Option<String>,
    /// The CMS signature algorithm (e.g. `ecdsa-with-SHA256`); only when verified.
    pub signature_algorithm: Option<String>,
}

/// One sw-description entry that refers to a member.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EntryReport {
    /// The member the entry installs.
    pub filename: String,
    /// The entry's handler `type` (`raw`, `keel-delta`, ...); `type` in JSON.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The entry's `device`, where a raw image is written.
    pub device: Option<String>,
    /// The entry's `path`, where a file is written.
    pub path: Option<String>,
    /// Whether the entry marks the member as AES-256-CBC encrypted.
    pub encrypted: bool,
    /// The entry's `compressed` algorithm (`zlib`, `zstd`), if any.
    pub compressed: Option<String>,
    /// The entry's `installed-directly` flag (streamed to the handler without a copy).
    pub installed_directly: bool,
    /// The sha256 the entry expects for the member, lower-case hex.
    pub sha256: Option<String>,
    /// `properties` (e.g. a keel-delta entry's source-sha256 / target-sha256); list values
    /// joined with ", ".
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// Outcome for one member.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MemberStatus {
    /// Referenced by sw-description and its sha256 matches.
    Ok,
    /// sha256 differs from sw-description.
    HashMismatch,
    /// Referenced, but sw-description has no sha256 for it.
    NoHash,
    /// Not referenced by any sw-description entry.
    Unreferenced,
    /// A second member with the same name.
    Duplicate,
    /// Decryption failed while extracting.
    DecryptFailed,
}

/// One member of the bundle.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberReport {
    /// Member name (cpio file name).
    pub name: String,
    /// Offset of the member's cpio header in the bundle, in bytes.
    pub offset: u64,
    /// Size of the member's data in bytes (ciphertext size if encrypted).
    pub size: u64,
    /// sha256 of the stored bytes, lower-case hex.
    pub sha256: String,
    /// The sha256 sw-description lists for it, lower-case hex; `None` if unreferenced or the
    /// entry has none.
    pub expected_sha256: Option<String>,
    /// Whether the referencing entry marks it as encrypted.
    pub encrypted: bool,
    /// The verdict for this member.
    pub status: MemberStatus,
}

/// Everything learnt from one pass over a bundle.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Syntax of sw-description: `"libconfig"` or `"json"`.
    pub syntax: &'static str,
    /// Size of the `sw-description` member in bytes.
    pub description_size: usize,
    /// `software.version` (top level, no selection).
    pub version: Option<String>,
    /// `software.description` (top level, no selection).
    pub description: Option<String>,
    /// `software.hardware-compatibility` (top level); `None` when absent.
    pub hardware_compatibility: Option<Vec<String>>,
    /// `set,mode` pairs usable with `swupdate -e`.
    pub selections: Vec<String>,
    /// Presence and, when checked, the signer of `sw-description.sig`.
    pub signature: SignatureReport,
    /// Every entry with a `filename` anywhere under `software` (all selections and boards), in
    /// document order.
    pub entries: Vec<EntryReport>,
    /// Every member after the description and signature, in bundle order.
    pub members: Vec<MemberReport>,
    /// Referenced filenames with no member.
    pub missing: Vec<String>,
    /// Every failed check, as a sentence naming the member or entry.
    pub problems: Vec<String>,
    /// Bytes read up to the end of the trailer member (the padding after it is not read).
    pub total_size: u64,
}

impl Report {
    /// Multi-line human-readable summary.
    pub fn to_human(&self) -> String {
        let mut s = String::new();
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        s.push_str(&format!("version:      {}\n", opt(&self.version)));
        if let Some(d) = &self.description {
            s.push_str(&format!("description:  {d}\n"));
        }
        if let Some(hw) = &self.hardware_compatibility {
            s.push_str(&format!("hardware:     {}\n", hw.join(", ")));
        }
        s.push_str(&format!(
            "sw-description: {} bytes, {}\n",
            self.description_size, self.syntax
        ));
        let sig = &self.signature;
        s.push_str(&match (sig.present, sig.verified) {
            (false, _) => "signature:    none\n".to_string(),
            (true, false) => format!(
                "signature:    {} bytes, not checked (pass --cert or --ca)\n",
                sig.size.unwrap_or(0)
            ),
            (true, true) => format!(
                "signature:    verified, signer {} (issuer {}, {})\n",
                opt(&sig.signer_subject),
                opt(&sig.signer_issuer),
                opt(&sig.signature_algorithm)
            ),
        });
        if !self.selections.is_empty() {
            s.push_str(&format!("selections:   {}\n", self.selections.join("  ")));
        }
        s.push_str("entries:\n");
        for e in &self.entries {
            let target = e.device.as_deref().or(e.path.as_deref()).unwrap_or("-");
            s.push_str(&format!(
                "  {:<32} type={:<12} -> {}{}{}\n",
                e.filename,
                e.kind.as_deref().unwrap_or("-"),
                target,
                if e.encrypted { " [encrypted]" } else { "" },
                e.compressed
                    .as_deref()
                    .map(|c| format!(" [compressed={c}]"))
                    .unwrap_or_default()
            ));
            if matches!(
                e.kind.as_deref(),
                Some(crate::DELTA_TYPE | crate::CHUNKED_TYPE)
            ) {
                for (k, v) in &e.properties {
                    s.push_str(&format!("      {k} = {v}\n"));
                }
            }
        }
        s.push_str("members:\n");
        for m in &self.members {
            s.push_str(&format!(
                "  {:<32} {:>12} bytes  sha256 {}  {}\n",
                m.name,
                m.size,
                m.sha256,
                serde_json::to_value(m.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ));
        }
        for name in &self.missing {
            s.push_str(&format!("  {name:<32} MISSING\n"));
        }
        s.push_str(&format!(
            "read:         {} bytes up to the cpio trailer\n",
            self.total_size
        ));
        if self.problems.is_empty() {
            s.push_str("result:       OK\n");
        } else {
            for p in &self.problems {
                s.push_str(&format!("problem:      {p}\n"));
            }
        }
        s
    }
}

struct HashingSink<W: Write> {
    hasher: Sha256,
    inner: Option<W>,
}

impl<W: Write> Write for HashingSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        if let Some(w) = self.inner.as_mut() {
            w.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().map_or(Ok(()), Write::flush)
    }
}

fn entry_report(e: &Entry) -> EntryReport {
    EntryReport {
        filename: e.filename.clone().unwrap_or_default(),
        kind: e.kind.clone(),
        device: e.device.clone(),
        path: e.path.clone(),
        encrypted: e.encrypted,
        compressed: e.compressed.clone(),
        installed_directly: e.installed_directly,
        sha256: e.sha256.map(|h| hex(&h)),
        properties: e
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.join(", ")))
            .collect(),
    }
}

/// Bytes of a member kept to check a keel-delta or keel-chunked header (a framed delta's
/// header is followed by its frame layout header, which names the zstd version).
pub(crate) const PREFIX_LEN: usize = keel_delta::apply::PREFIX_LEN;

/// Property of a keel-delta entry whose delta recompresses zstd frames: the
/// `ZSTD_versionNumber()` it needs on the device (decimal, e.g. `10505`). The server offers such
/// a delta only to devices reporting the same `keel.delta.zstd`.
pub const ZSTD_FRAMES_PROPERTY: &str = properties::ZSTD_FRAMES;

/// The zstd version a keel delta needs (`Some` for a delta with zstd frames, `None` for a plain
/// one), from its first bytes (at least the delta header; a framed delta also its layout header).
pub fn delta_zstd_frames(prefix: &[u8]) -> Result<Option<u32>, String> {
    let (_, layout) =
        keel_delta::apply::parse_prefix(prefix).map_err(|e| format!("not a keel delta: {e}"))?;
    Ok(layout.map(|l| l.zstd_version))
}

/// A keel-delta or keel-chunked member must describe the images its entry's properties name
/// (the server picks a delta by its source-sha256). Encrypted members are not looked into.
fn check_derived(entry: &Entry, prefix: &[u8]) -> Result<(), String> {
    let kind = entry.kind.as_deref();
    if entry.encrypted || !matches!(kind, Some(crate::DELTA_TYPE | crate::CHUNKED_TYPE)) {
        return Ok(());
    }
    let property = |key: &str| {
        entry
            .properties
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    };
    let mut facts: Vec<(&str, String)> = Vec::new();
    if kind == Some(crate::DELTA_TYPE) {
        let (header, layout) = keel_delta::apply::parse_prefix(prefix)
            .map_err(|e| format!("not a keel delta: {e}"))?;
        facts.push((properties::SOURCE_SHA256, hex(&header.seed_sha256)));
        facts.push((properties::TARGET_SHA256, hex(&header.target_sha256)));
        // The server offers a framed delta by this property: it must be there and true, and a
        // plain delta must not claim it.
        match (layout.map(|l| l.zstd_version), property(ZSTD_FRAMES_PROPERTY)) {
            (Some(version), Some(_)) => facts.push((ZSTD_FRAMES_PROPERTY, version.to_string())),
            (Some(_), None) => {
                return Err(format!(
                    "the delta recompresses zstd frames but the entry has no properties.{ZSTD_FRAMES_PROPERTY}"
                ))
            }
            (None, Some(said)) => {
                return Err(format!(
                    "properties say {ZSTD_FRAMES_PROPERTY} {said}, the member is a plain delta"
                ))
            }
            (None, None) => {}
        }
    } else {
        let index = keel_delta::chunk::ChunkIndexHeader::parse(prefix)
            .map_err(|e| format!("not a keel chunk index: {e}"))?;
        facts.push((properties::TARGET_SIZE, index.image_size.to_string()));
        facts.push((properties::TARGET_SHA256, hex(&index.image_sha256)));
    }
    for (key, actual) in facts {
        match property(key) {
            Some(said) if said.trim().eq_ignore_ascii_case(&actual) => {}
            Some(said) => {
                return Err(format!(
                    "properties say {key} {said}, the member describes {actual}"
                ))
            }
            None if key == properties::TARGET_SHA256 => {
                return Err(format!(
                    "{} entry without properties.{key}",
                    kind.unwrap_or("")
                ))
            }
            None => {}
        }
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), BundleError> {
    std::fs::write(path, data).map_err(|e| BundleError::io(path, e))
}

/// One streaming pass: signature (when `options.verifier` is set; failure is an error), then
/// every member hashed against sw-description. Container damage (bad cpio, checksum, order) is
/// an error; per-member findings are collected in [`Report::problems`].
pub fn scan<R: Read>(input: R, options: &ScanOptions<'_>) -> Result<Report, BundleError> {
    let mut reader = SwuReader::new(input);
    let members = reader.read_description()?;

    let mut signature = SignatureReport {
        present: members.signature.is_some(),
        size: members.signature.as_ref().map(Vec::len),
        verified: false,
        signer_subject: None,
        signer_issuer: None,
        signature_algorithm: None,
    };
    if let Some(verifier) = options.verifier {
        let sig = members.signature.as_deref().ok_or(BundleError::Unsigned)?;
        let info = verifier
            .verify_detached(&members.description, sig)
            .map_err(BundleError::Signature)?;
        signature.verified = true;
        signature.signer_subject = Some(info.subject);
        signature.signer_issuer = Some(info.issuer);
        signature.signature_algorithm = Some(info.signature_algorithm);
    }

    let description = SwDescription::parse(&members.description)?;
    let top = description.software()?;
    let entries = description.tree_member_entries()?;
    let mut problems: Vec<String> = Vec::new();

    if let Some(dir) = options.extract_to {
        std::fs::create_dir_all(dir).map_err(|e| BundleError::io(dir, e))?;
        write_file(&dir.join(DESCRIPTION_NAME), &members.description)?;
        if let Some(sig) = &members.signature {
            write_file(&dir.join(SIGNATURE_NAME), sig)?;
        }
    }

    // Expected hash per member name; entries naming the same member must agree.
    let mut expected: Vec<(String, Option<[u8; 32]>, &Entry)> = Vec::new();
    for e in &entries {
        let Some(name) = &e.filename else { continue };
        match expected.iter().find(|(n, _, _)| n == name) {
            Some((_, h, first)) => {
                if *h != e.sha256 || first.encrypted != e.encrypted {
                    problems.push(format!(
                        "entries for {name:?} disagree on sha256 or encryption"
                    ));
                }
            }
            None => expected.push((name.clone(), e.sha256, e)),
        }
    }

    let mut reports: Vec<MemberReport> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let offset_before = reader.offset();
        let Some(mut member) = reader.next_member()? else {
            break;
        };
        let name = member.name.clone();
        let known = expected.iter().find(|(n, _, _)| *n == name);
        let duplicate = reports.iter().any(|r| r.name == name);
        let encrypted = known.is_some_and(|(_, _, e)| e.encrypted);

        // Where extracted bytes go (plaintext when a key is given for an encrypted member).
        let mut part_path: Option<PathBuf> = None;
        let mut sink: Box<dyn Write> = Box::new(io::sink());
        let mut decryptor: Option<DecryptWriter<File>> = None;
        if let Some(dir) = options.extract_to {
            if let Err(e) = check_member_name(&name) {
                problems.push(format!("member {name:?} cannot be extracted: {e}"));
            } else if !duplicate {
                let part = dir.join(format!("{name}.part"));
                let file = File::create(&part).map_err(|e| BundleError::io(&part, e))?;
                match (encrypted, options.aes_key) {
                    (true, Some(key)) => {
                        let iv = known
                            .and_then(|(_, _, e)| e.ivt.as_deref())
                            .and_then(parse_iv)
                            .unwrap_or(key.iv);
                        decryptor = Some(DecryptWriter::new(file, &key.key, &iv));
                    }
                    _ => sink = Box::new(file),
                }
                part_path = Some(part);
            }
        }

        let mut hashing = HashingSink {
            hasher: Sha256::new(),
            inner: Some(sink),
        };
        let mut decrypt_error: Option<io::Error> = None;
        // The first bytes of the member: a keel-delta / keel-chunked header to check against the
        // entry's properties.
        let mut prefix: Vec<u8> = Vec::new();
        loop {
            let n = member.read(&mut buf).map_err(|e| {
                keel_formats::swu::SwuError::Cpio(CpioError::from_io(e, offset_before))
            })?;
            if n == 0 {
                break;
            }
            let want = PREFIX_LEN.saturating_sub(prefix.len()).min(n);
            prefix.extend_from_slice(&buf[..want]);
            hashing
                .write_all(&buf[..n])
                .map_err(|e| BundleError::io(part_path.clone().unwrap_or_default(), e))?;
            if let Some(d) = decryptor.as_mut() {
                if decrypt_error.is_none() {
                    if let Err(e) = d.write_all(&buf[..n]) {
                        decrypt_error = Some(e);
                    }
                }
            }
        }
        if let Some(d) = decryptor.take() {
            if decrypt_error.is_none() {
                if let Err(e) = d.finish() {
                    decrypt_error = Some(e);
                }
            }
        }
        let digest: [u8; 32] = hashing.hasher.finalize().into();
        let size = member.size;

        let status = if duplicate {
            problems.push(format!("member {name:?} appears more than once"));
            MemberStatus::Duplicate
        } else {
            match known {
                None => {
                    problems.push(format!(
                        "member {name:?} is not referenced by sw-description"
                    ));
                    MemberStatus::Unreferenced
                }
                Some((_, None, _)) => {
                    problems.push(format!("sw-description has no sha256 for member {name:?}"));
                    MemberStatus::NoHash
                }
                Some((_, Some(h), _)) if *h != digest => {
                    problems.push(format!(
                        "member {name:?}: sha256 mismatch (sw-description says {}, member has {})",
                        hex(h),
                        hex(&digest)
                    ));
                    MemberStatus::HashMismatch
                }
                Some(_) => match &decrypt_error {
                    Some(e) => {
                        problems.push(format!("member {name:?}: decryption failed: {e}"));
                        MemberStatus::DecryptFailed
                    }
                    None => {
                        for (_, _, entry) in expected.iter().filter(|(n, _, _)| *n == name) {
                            if let Err(p) = check_derived(entry, &prefix) {
                                problems.push(format!("member {name:?}: {p}"));
                            }
                        }
                        MemberStatus::Ok
                    }
                },
            }
        };
        if let (Some(dir), Some(part)) = (options.extract_to, part_path) {
            if status == MemberStatus::Ok {
                let final_path = dir.join(&name);
                std::fs::rename(&part, &final_path).map_err(|e| BundleError::io(&final_path, e))?;
            } else {
                let _ = std::fs::remove_file(&part);
            }
        }
        reports.push(MemberReport {
            name,
            offset: member.offset,
            size,
            sha256: hex(&digest),
            expected_sha256: known.and_then(|(_, h, _)| h.map(|h| hex(&h))),
            encrypted,
            status,
        });
    }
    let mut missing = Vec::new();
    for (name, _, _) in &expected {
        if !reports.iter().any(|r| &r.name == name) {
            problems.push(format!(
                "member {name:?} referenced by sw-description is missing from the bundle"
            ));
            missing.push(name.clone());
        }
    }

    Ok(Report {
        syntax: match description.syntax() {
            Syntax::Libconfig => "libconfig",
            Syntax::Json => "json",
        },
        description_size: members.description.len(),
        version: top.version,
        description: top.description,
        hardware_compatibility: top.hardware_compatibility,
        selections: description
            .selections()
            .into_iter()
            .map(|(s, m)| format!("{s},{m}"))
            .collect(),
        signature,
        entries: entries.iter().map(entry_report).collect(),
        members: reports,
        missing,
        problems,
        total_size: reader.offset(),
    })
}

fn parse_iv(h: &str) -> Option<[u8; 16]> {
    let mut iv = [0u8; 16];
    if h.len() != 32 {
        return None;
    }
    for (i, b) in iv.iter_mut().enumerate() {
        *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(iv)
}

/// Verifies signature (against `verifier`) and every member; any problem is an error.
pub fn verify<R: Read>(input: R, verifier: &Verifier) -> Result<Report, BundleError> {
    let report = scan(
        input,
        &ScanOptions {
            verifier: Some(verifier),
            ..ScanOptions::default()
        },
    )?;
    if report.problems.is_empty() {
        Ok(report)
    } else {
        Err(BundleError::Verification {
            problems: report.problems,
        })
    }
}

/// Reports on a bundle without requiring a certificate (signature then shows as not checked).
pub fn inspect<R: Read>(input: R, verifier: Option<&Verifier>) -> Result<Report, BundleError> {
    scan(
        input,
        &ScanOptions {
            verifier,
            ..ScanOptions::default()
        },
    )
}

/// Extracts into `dir` (decrypting with `aes_key` if given); fails like [`verify`]. Members that
/// failed their check are not left in `dir`.
pub fn extract<R: Read>(
    input: R,
    dir: &Path,
    verifier: Option<&Verifier>,
    aes_key: Option<&AesKey>,
) -> Result<Report, BundleError> {
    let report = scan(
        input,
        &ScanOptions {
            verifier,
            extract_to: Some(dir),
            aes_key,
        },
    )?;
    if report.problems.is_empty() {
        Ok(report)
    } else {
        Err(BundleError::Verification {
            problems: report.problems,
        })
    }
}
