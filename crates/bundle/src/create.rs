//! `keel bundle create`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use keel_formats::cpio::{Checksum, MAX_MEMBER_SIZE};
use keel_formats::names::properties as names;
use keel_formats::swdesc::{hex, Value};
use keel_formats::swu::SwuWriter;
use keel_sign::aes::{encrypted_len, AesKey, EncryptWriter};
use keel_sign::Signer;
use sha2::{Digest, Sha256};

use crate::manifest::Derivation;
use crate::{check_member_name, BundleError, BundleSpec};

const CHUNK: usize = 256 * 1024;

/// How to build: signing key, encryption key, timestamp.
#[derive(Default)]
pub struct CreateOptions {
    /// Signs `sw-description` (CMS, detached) when set.
    pub signer: Option<Signer>,
    /// Encrypts the entries with `encrypted = true` (AES-256-CBC, `swupdate -K` key file).
    pub aes_key: Option<AesKey>,
    /// `SOURCE_DATE_EPOCH`: the cpio mtime of every member and the CMS signingTime. `None`:
    /// mtime 0 and no signingTime, so the output never depends on the clock.
    pub source_date_epoch: Option<u64>,
}

/// One member written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedMember {
    /// Member name in the bundle (the entries' `filename`).
    pub name: String,
    /// The file the data was read from; for a computed `.kdelta`/`.kidx` member a temporary
    /// file that no longer exists when [`create`] returns.
    pub source: PathBuf,
    /// Size in the bundle (ciphertext size for encrypted images).
    pub size: u64,
    /// sha256 of the stored bytes (ciphertext if encrypted), lower-case hex, as written into
    /// sw-description.
    pub sha256: String,
    /// Whether the member was AES-256-CBC encrypted.
    pub encrypted: bool,
}

/// What [`create`] wrote.
#[derive(Debug, Clone)]
pub struct CreateReport {
    /// The final sw-description text (with sha256 and ivt filled in).
    pub description: String,
    /// Whether `sw-description.sig` was written ([`CreateOptions::signer`] was set).
    pub signed: bool,
    /// Every member after `sw-description` and its signature, one per distinct name.
    pub members: Vec<CreatedMember>,
    /// Size of the `.swu` written, in bytes (including the trailer's padding).
    pub bytes_written: u64,
}

struct Plan {
    name: String,
    /// A script entry: stored before the images, so a streaming installer meets
    /// pre-install scripts before the first image byte.
    script: bool,
    source: PathBuf,
    encrypted: bool,
    ivt: Option<[u8; 16]>,
    manifest_sha256: Option<[u8; 32]>,
    plain_size: u64,
    stored_size: u64,
    sha256: [u8; 32],
    check: u32,
}

/// SWUpdate's script handler types (the `scripts` section).
fn is_script(kind: Option<&str>) -> bool {
    matches!(
        kind,
        Some("shellscript" | "preinstall" | "postinstall" | "lua")
    )
}

/// zstd level of the chunks in a `chunked = true` image's pack (what `keel delta index` uses).
pub const CHUNK_LEVEL: i32 = 19;

/// Builds a bundle from `spec` into `out`. See the crate documentation for the passes.
/// A spec with `chunked` images needs [`create_with_packs`] (somewhere to write the packs).
pub fn create<W: Write>(
    spec: &BundleSpec,
    options: &CreateOptions,
    out: W,
) -> Result<CreateReport, BundleError> {
    create_with_packs(spec, options, None, out)
}

/// A member computed from an image: its file (in a temporary directory) and the properties its
/// entries get.
struct Generated {
    file: PathBuf,
    properties: Vec<(&'static str, String)>,
}

fn derive_error(member: &str, message: impl std::fmt::Display) -> BundleError {
    BundleError::Derive {
        member: member.to_string(),
        message: message.to_string(),
    }
}

/// Computes the `delta-from` / `chunked` members of `spec` into `workdir` (packs into
/// `pack_dir`). Deterministic: the same inputs give the same bytes.
fn generate(
    spec: &BundleSpec,
    workdir: &Path,
    pack_dir: Option<&Path>,
) -> Result<BTreeMap<String, Generated>, BundleError> {
    let mut generated = BTreeMap::new();
    for (member, how) in &spec.derived {
        check_member_name(member)?;
        let file = workdir.join(member);
        let properties = match how {
            Derivation::Delta { target, seed } => {
                let target_path = spec.source_of(target);
                // The encoder matches against the whole seed: both images are held in memory.
                let old = std::fs::read(seed).map_err(|e| BundleError::io(seed, e))?;
                let new =
                    std::fs::read(&target_path).map_err(|e| BundleError::io(&target_path, e))?;
                let out = File::create(&file).map_err(|e| BundleError::io(&file, e))?;
                keel_delta::create(
                    &old,
                    &new,
                    &keel_delta::CreateOptions::default(),
                    BufWriter::new(out),
                )
                .map_err(|e| derive_error(member, e))?;
                let mut properties = vec![
                    (names::SOURCE_SHA256, hex(&keel_delta::sha256(&old))),
                    (names::TARGET_SHA256, hex(&keel_delta::sha256(&new))),
                ];
                // A delta that recompresses zstd frames names the zstd version the device needs
                // (read back from its header, what `keel bundle verify` checks it against).
                let mut prefix = Vec::with_capacity(crate::scan::PREFIX_LEN);
                File::open(&file)
                    .and_then(|f| {
                        f.take(crate::scan::PREFIX_LEN as u64)
                            .read_to_end(&mut prefix)
                    })
                    .map_err(|e| BundleError::io(&file, e))?;
                if let Some(version) =
                    crate::scan::delta_zstd_frames(&prefix).map_err(|e| derive_error(member, e))?
                {
                    properties.push((names::ZSTD_FRAMES, version.to_string()));
                }
                properties
            }
            Derivation::Chunked { target, pack } => {
                check_member_name(pack)?;
                let pack_dir = pack_dir.ok_or_else(|| {
                    derive_error(
                        member,
                        "a chunked image needs a directory for its pack (keel bundle create -o writes it next to the bundle)",
                    )
                })?;
                let target_path = spec.source_of(target);
                let input =
                    File::open(&target_path).map_err(|e| BundleError::io(&target_path, e))?;
                let pack_path = pack_dir.join(pack);
                let pack_file =
                    File::create(&pack_path).map_err(|e| BundleError::io(&pack_path, e))?;
                let mut pack_out = BufWriter::new(pack_file);
                let index = keel_delta::chunk::ChunkIndex::build(
                    BufReader::with_capacity(CHUNK, input),
                    keel_delta::chunk::ChunkParams::default(),
                    CHUNK_LEVEL,
                    |_, data| pack_out.write_all(data),
                )
                .map_err(|e| derive_error(member, e))?;
                pack_out
                    .into_inner()
                    .map_err(|e| BundleError::io(&pack_path, e.into_error()))?
                    .sync_all()
                    .map_err(|e| BundleError::io(&pack_path, e))?;
                std::fs::write(&file, index.to_bytes()).map_err(|e| BundleError::io(&file, e))?;
                vec![
                    (names::TARGET_SHA256, hex(&index.image_sha256)),
                    (names::TARGET_SIZE, index.image_size.to_string()),
                    (names::PACK, pack.clone()),
                ]
            }
        };
        generated.insert(member.clone(), Generated { file, properties });
    }
    Ok(generated)
}

/// [`create`], writing the packs of `chunked = true` images into `pack_dir` (normally the
/// directory of the bundle: the agent fetches `<pack>` from beside the bundle).
pub fn create_with_packs<W: Write>(
    spec: &BundleSpec,
    options: &CreateOptions,
    pack_dir: Option<&Path>,
    out: W,
) -> Result<CreateReport, BundleError> {
    let mut description = spec.description.clone();
    let mut plans: Vec<Plan> = Vec::new();
    let workdir = tempfile::tempdir().map_err(|e| BundleError::io(std::env::temp_dir(), e))?;
    let generated = generate(spec, workdir.path(), pack_dir)?;

    // Unique members in document order, with their per-entry attributes reconciled.
    for entry in description.tree_member_entries()? {
        let Some(name) = entry.filename.clone() else {
            continue;
        };
        check_member_name(&name)?;
        let ivt = match &entry.ivt {
            Some(h) => Some(parse_iv(h).ok_or_else(|| BundleError::ConflictingEntries {
                name: name.clone(),
                reason: format!("ivt {h:?} is not 32 hex digits"),
            })?),
            None => None,
        };
        if let Some(existing) = plans.iter_mut().find(|p| p.name == name) {
            if existing.encrypted != entry.encrypted {
                return Err(BundleError::ConflictingEntries {
                    name,
                    reason: "one entry is encrypted, another is not".into(),
                });
            }
            if ivt.is_some() && existing.ivt.is_some() && ivt != existing.ivt {
                return Err(BundleError::ConflictingEntries {
                    name,
                    reason: "different ivt values".into(),
                });
            }
            existing.ivt = existing.ivt.or(ivt);
            if let (Some(a), Some(b)) = (existing.manifest_sha256, entry.sha256) {
                if a != b {
                    return Err(BundleError::ConflictingEntries {
                        name,
                        reason: "different sha256 values".into(),
                    });
                }
            }
            existing.manifest_sha256 = existing.manifest_sha256.or(entry.sha256);
            continue;
        }
        if entry.encrypted && options.aes_key.is_none() {
            return Err(BundleError::NoAesKey { name });
        }
        let source = match generated.get(&name) {
            Some(g) => g.file.clone(),
            None => spec.source_of(&name),
        };
        plans.push(Plan {
            name,
            script: is_script(entry.kind.as_deref()),
            source,
            encrypted: entry.encrypted,
            ivt,
            manifest_sha256: if entry.encrypted { None } else { entry.sha256 },
            plain_size: 0,
            stored_size: 0,
            sha256: [0; 32],
            check: 0,
        });
    }

    plans.sort_by_key(|plan| !plan.script); // stable: document order within each kind

    // Sizes first: an oversized image fails before anything is hashed.
    for plan in &mut plans {
        let meta = std::fs::metadata(&plan.source).map_err(|e| BundleError::io(&plan.source, e))?;
        if !meta.is_file() {
            return Err(BundleError::NotAFile {
                name: plan.name.clone(),
                path: plan.source.clone(),
            });
        }
        plan.plain_size = meta.len();
        plan.stored_size = if plan.encrypted {
            encrypted_len(meta.len())
        } else {
            meta.len()
        };
        if plan.stored_size > MAX_MEMBER_SIZE {
            return Err(BundleError::TooLarge {
                name: plan.name.clone(),
                path: plan.source.clone(),
                size: plan.stored_size,
            });
        }
    }

    // Hash pass (plus IV derivation for encrypted images without an explicit ivt).
    for plan in &mut plans {
        let key = if plan.encrypted {
            options.aes_key.as_ref()
        } else {
            None
        };
        if let (Some(key), None) = (key, plan.ivt) {
            plan.ivt = Some(derive_iv(key, &plan.name, &hash_file(&plan.source)?));
        }
        let mut reader =
            MemberSource::open(&plan.source, key.map(|k| (k, plan.ivt.unwrap_or(k.iv))))?;
        let mut hasher = Sha256::new();
        let mut check = Checksum::new();
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| BundleError::io(&plan.source, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            check.update(&buf[..n]);
            total += n as u64;
        }
        if total != plan.stored_size {
            return Err(BundleError::SourceChanged {
                name: plan.name.clone(),
                detail: format!("size was {} bytes, read {total}", plan.stored_size),
            });
        }
        plan.sha256 = hasher.finalize().into();
        plan.check = check.value();
        if let Some(expected) = plan.manifest_sha256 {
            if expected != plan.sha256 {
                return Err(BundleError::ManifestHashMismatch {
                    name: plan.name.clone(),
                    expected: hex(&expected),
                    actual: hex(&plan.sha256),
                });
            }
        }
    }

    // Fill sha256 (and ivt) into every entry naming the member.
    description.for_each_member_group_mut(|g| {
        let Some(Value::Str(name)) = g.get("filename") else {
            return Ok::<(), BundleError>(());
        };
        let Some(plan) = plans.iter().find(|p| &p.name == name) else {
            return Ok(());
        };
        let (sha, ivt) = (hex(&plan.sha256), plan.ivt);
        let generated = generated.get(name);
        g.set("sha256", Value::Str(sha));
        if let Some(generated) = generated {
            let mut properties = match g.remove("properties") {
                Some(Value::Group(p)) => p,
                None => keel_formats::swdesc::Group::new(),
                Some(other) => {
                    return Err(BundleError::ConflictingEntries {
                        name: plan.name.clone(),
                        reason: format!("properties is a {}, not a group", other.kind()),
                    })
                }
            };
            for (key, value) in &generated.properties {
                properties.set(*key, Value::Str(value.clone()));
            }
            g.set("properties", Value::Group(properties));
        }
        if plan.encrypted {
            g.set("encrypted", Value::Bool(true));
            if let Some(iv) = ivt {
                g.set("ivt", Value::Str(hex(&iv)));
            }
        }
        Ok(())
    })?;
    let text = description.to_libconfig();

    let signature = match &options.signer {
        Some(signer) => Some(signer.sign_detached(text.as_bytes(), options.source_date_epoch)?),
        None => None,
    };

    let mtime = options
        .source_date_epoch
        .map_or(0, |t| u32::try_from(t).unwrap_or(u32::MAX));
    let mut counting = CountingWriter {
        inner: out,
        count: 0,
    };
    let mut writer = SwuWriter::new(&mut counting, mtime);
    writer.write_description(text.as_bytes(), signature.as_deref())?;
    for plan in &plans {
        let key = if plan.encrypted {
            options.aes_key.as_ref()
        } else {
            None
        };
        let reader = MemberSource::open(&plan.source, key.map(|k| (k, plan.ivt.unwrap_or(k.iv))))?;
        writer
            .append_image(&plan.name, plan.stored_size, plan.check, reader)
            .map_err(|e| match e {
                keel_formats::swu::SwuError::Cpio(
                    c @ (keel_formats::cpio::CpioError::SizeMismatch { .. }
                    | keel_formats::cpio::CpioError::ChecksumChanged { .. }),
                ) => BundleError::SourceChanged {
                    name: plan.name.clone(),
                    detail: c.to_string(),
                },
                other => other.into(),
            })?;
    }
    writer.finish()?;
    counting
        .inner
        .flush()
        .map_err(|e| BundleError::io("<output>", e))?;

    Ok(CreateReport {
        description: text,
        signed: signature.is_some(),
        members: plans
            .iter()
            .map(|p| CreatedMember {
                name: p.name.clone(),
                source: p.source.clone(),
                size: p.stored_size,
                sha256: hex(&p.sha256),
                encrypted: p.encrypted,
            })
            .collect(),
        bytes_written: counting.count,
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

/// Per-image IV: unique per (key, member name, plaintext) and reproducible, so two images never
/// share an IV (CWE-329) and two runs give the same bytes.
fn derive_iv(key: &AesKey, name: &str, plain_sha256: &[u8; 32]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"keel ivt v1\0");
    h.update(key.key);
    h.update(name.as_bytes());
    h.update([0]);
    h.update(plain_sha256);
    let digest: [u8; 32] = h.finalize().into();
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&digest[..16]);
    iv
}

fn hash_file(path: &Path) -> Result<[u8; 32], BundleError> {
    let mut file = File::open(path).map_err(|e| BundleError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).map_err(|e| BundleError::io(path, e))?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

/// Shared output buffer of the streaming encryptor.
#[derive(Clone, Default)]
struct SharedBuf(Rc<RefCell<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes of a member as stored in the bundle: the file, or its AES-256-CBC ciphertext.
/// Memory stays at a few chunks whatever the file size.
struct MemberSource {
    file: File,
    encrypting: bool,
    encryptor: Option<EncryptWriter<SharedBuf>>,
    out: SharedBuf,
    pos: usize,
    eof: bool,
    chunk: Vec<u8>,
}

impl MemberSource {
    fn open(
        path: &Path,
        encryption: Option<(&AesKey, [u8; 16])>,
    ) -> Result<MemberSource, BundleError> {
        let file = File::open(path).map_err(|e| BundleError::io(path, e))?;
        let out = SharedBuf::default();
        let encryptor = encryption.map(|(k, iv)| EncryptWriter::new(out.clone(), &k.key, &iv));
        Ok(MemberSource {
            file,
            encrypting: encryptor.is_some(),
            encryptor,
            out,
            pos: 0,
            eof: false,
            chunk: vec![0u8; CHUNK],
        })
    }
}

impl Read for MemberSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.encrypting {
            return self.file.read(buf);
        }
        loop {
            {
                let out = self.out.0.borrow();
                if self.pos < out.len() {
                    let n = buf.len().min(out.len() - self.pos);
                    buf[..n].copy_from_slice(&out[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            if self.eof {
                return Ok(0);
            }
            self.out.0.borrow_mut().clear();
            self.pos = 0;
            let n = self.file.read(&mut self.chunk)?;
            if n == 0 {
                self.eof = true;
                if let Some(enc) = self.encryptor.take() {
                    enc.finish()?;
                }
            } else if let Some(enc) = self.encryptor.as_mut() {
                enc.write_all(&self.chunk[..n])?;
            }
        }
    }
}

struct CountingWriter<W: Write> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_source_encrypts_like_one_shot() {
        let dir = tempfile::tempdir().unwrap();
        let key = AesKey {
            key: [7; 32],
            iv: [9; 16],
        };
        for len in [
            0usize,
            1,
            15,
            16,
            17,
            CHUNK - 1,
            CHUNK,
            CHUNK + 5,
            3 * CHUNK + 100,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join("x");
            std::fs::write(&path, &data).unwrap();
            let mut streamed = Vec::new();
            MemberSource::open(&path, Some((&key, key.iv)))
                .unwrap()
                .read_to_end(&mut streamed)
                .unwrap();
            let mut one_shot = EncryptWriter::new(Vec::new(), &key.key, &key.iv);
            one_shot.write_all(&data).unwrap();
            assert_eq!(streamed, one_shot.finish().unwrap(), "len {len}");
            assert_eq!(streamed.len() as u64, encrypted_len(len as u64));
        }
    }
}
