//! `keel image` commands: build-side work on filesystem images (dm-verity hash trees, in the
//! format `veritysetup format` writes; docs/verity.md).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use keel_verity::{Params, DEFAULT_BLOCK_SIZE};

#[derive(Subcommand)]
pub enum Command {
    /// Compute the dm-verity hash tree of IMAGE (superblock v1, sha256) into HASHTREE and print
    /// the root hash; `veritysetup verify IMAGE HASHTREE ROOTHASH` accepts the result.
    Verity {
        image: PathBuf,
        /// The hash device to write (a file, or a partition).
        #[arg(short, long)]
        output: PathBuf,
        /// Salt in hex (default: 32 random bytes, as veritysetup); "-" for no salt.
        #[arg(long)]
        salt: Option<String>,
        /// UUID for the superblock (default: random).
        #[arg(long)]
        uuid: Option<uuid::Uuid>,
        #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE)]
        data_block_size: u32,
        #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE)]
        hash_block_size: u32,
        /// Threads hashing data blocks (default: one per CPU).
        #[arg(long)]
        threads: Option<usize>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check IMAGE against HASHTREE and ROOT_HASH (as `veritysetup verify`): names the first
    /// data or hash block that does not match.
    VerityVerify {
        image: PathBuf,
        hash_tree: PathBuf,
        root_hash: String,
    },
}

/// Writes the hash device through `write`: a partition in place, a file through a temporary
/// file renamed on success, so a failed run leaves no half-written or empty output behind.
fn write_hash_device<T>(
    output: &Path,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let is_device = fs::metadata(output).is_ok_and(|m| m.file_type().is_block_device());
    let target = if is_device {
        output.to_path_buf()
    } else {
        temp_path(output)
    };
    let file = fs::OpenOptions::new()
        .write(true)
        .create(!is_device)
        .truncate(!is_device)
        .open(&target)
        .with_context(|| format!("creating {}", target.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let finish = |out: BufWriter<File>| -> anyhow::Result<()> {
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    };
    let result = write(&mut out).and_then(|value| {
        finish(out).with_context(|| format!("writing {}", target.display()))?;
        Ok(value)
    });
    match result {
        Ok(value) if is_device => Ok(value),
        Ok(value) => {
            fs::rename(&target, output).with_context(|| {
                format!("renaming {} to {}", target.display(), output.display())
            })?;
            Ok(value)
        }
        Err(err) => {
            if !is_device {
                let _ = fs::remove_file(&target); // best effort: the error below is what matters
            }
            Err(err)
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".keel-tmp");
    path.with_file_name(name)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Verity {
            image,
            output,
            salt,
            uuid,
            data_block_size,
            hash_block_size,
            threads,
            json,
        } => {
            let mut params = Params::random();
            if let Some(threads) = threads {
                params.threads = threads.max(1);
            }
            params.data_block_size = data_block_size;
            params.hash_block_size = hash_block_size;
            match salt.as_deref() {
                None => {}
                Some("-") => params.salt.clear(),
                Some(text) => {
                    params.salt = hex::decode(text)
                        .with_context(|| format!("--salt {text:?} is not hexadecimal"))?;
                }
            }
            if let Some(uuid) = uuid {
                params.uuid = uuid;
            }
            let mut data =
                File::open(&image).with_context(|| format!("opening {}", image.display()))?;
            let size = data
                .metadata()
                .with_context(|| format!("reading the size of {}", image.display()))?
                .len();
            let formatted = write_hash_device(&output, |out| {
                keel_verity::format(&mut data, size, &params, out).with_context(|| {
                    format!("hashing {} into {}", image.display(), output.display())
                })
            })?;
            let root = hex::encode(formatted.root_hash);
            let salt = hex::encode(&formatted.superblock.salt);
            if json {
                let value = serde_json::json!({
                    "root_hash": root,
                    "salt": salt,
                    "uuid": formatted.superblock.uuid.to_string(),
                    "hash_type": 1,
                    "algorithm": keel_verity::ALGORITHM,
                    "data_block_size": data_block_size,
                    "hash_block_size": hash_block_size,
                    "data_blocks": formatted.geometry.data_blocks,
                    "hash_device_size": formatted.geometry.hash_device_size()?,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "root hash: {root}")?;
                writeln!(
                    stdout,
                    "salt: {}",
                    if salt.is_empty() { "-" } else { &salt }
                )?;
                writeln!(stdout, "uuid: {}", formatted.superblock.uuid)?;
                writeln!(stdout, "data blocks: {}", formatted.geometry.data_blocks)?;
                writeln!(
                    stdout,
                    "hash device size: {}",
                    formatted.geometry.hash_device_size()?
                )?;
            }
            Ok(())
        }
        Command::VerityVerify {
            image,
            hash_tree,
            root_hash,
        } => {
            let root: [u8; 32] = hex::decode(&root_hash)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .with_context(|| {
                    format!("root hash {root_hash:?} is not 64 hexadecimal digits (sha256)")
                })?;
            let hash_device =
                fs::read(&hash_tree).with_context(|| format!("reading {}", hash_tree.display()))?;
            let mut data =
                File::open(&image).with_context(|| format!("opening {}", image.display()))?;
            match keel_verity::verify(&mut data, &hash_device, &root, threads()) {
                Ok(verified) => {
                    println!(
                        "verified: {} data blocks of {} match root hash {root_hash}",
                        verified.geometry.data_blocks,
                        image.display()
                    );
                    Ok(())
                }
                Err(err) => bail!(
                    "{} does not verify against {}: {err}",
                    image.display(),
                    hash_tree.display()
                ),
            }
        }
    }
}
