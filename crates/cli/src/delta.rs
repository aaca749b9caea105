//! `keel delta` commands: static deltas (create/apply/inspect) and chunk indexes for the dynamic
//! path (index/plan/assemble). Formats: docs/delta-format.md.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use keel_delta::chunk::{self, ChunkIndex, ChunkParams, DirStore, PackReader, SeedChunks};
use keel_delta::{hex, Checkpoint, CreateOptions};

#[derive(Subcommand)]
pub enum Command {
    /// Create a static delta that turns OLD (the device's active slot) into NEW.
    Create {
        old: PathBuf,
        new: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// zstd level of the delta streams (1-22).
        #[arg(long, default_value_t = 19)]
        level: i32,
        /// Most uncompressed diff+extra bytes per segment (decoder buffer), in KiB.
        #[arg(long, default_value_t = 8192)]
        segment_kib: u32,
        /// Equal runs at least this long inside aligned regions become COPY ops.
        #[arg(long, default_value_t = CreateOptions::default().copy_min)]
        copy_min: usize,
        /// Skip the second pass that turns short (>= 8 byte) seed matches inside literal runs
        /// into COPY ops (faster create; larger deltas of compressed images).
        #[arg(long)]
        no_short_matches: bool,
        /// Never diff through zstd frames (docs/delta-format.md "zstd frames"): for devices whose
        /// keel-agent was built with another zstd version than this tool.
        #[arg(long)]
        no_zstd_frames: bool,
    },
    /// Apply a static delta: hash-check SEED, write the target, verify its sha256.
    Apply {
        #[arg(long)]
        seed: PathBuf,
        delta: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Resume from / record progress in this file (a power cut mid-apply continues here).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Show a delta's header and segments, or a chunk index's summary.
    Inspect { file: PathBuf },
    /// Chunk IMAGE (FastCDC) into a chunk index; optionally fill a chunk store and write a pack.
    Index {
        image: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// casync-style chunk store directory (<dir>/<4 hex>/<id>.cacnk).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Pack file: distinct compressed chunks in index order (for HTTP Range).
        #[arg(long)]
        pack: Option<PathBuf>,
        /// Average chunk size in KiB (min = avg/4, max = 4 avg).
        #[arg(long, default_value_t = 64)]
        avg_kib: u32,
        #[arg(long, default_value_t = 19)]
        level: i32,
    },
    /// Print what a device with SEED would download for INDEX (chunks and bytes).
    Plan {
        #[arg(long)]
        index: PathBuf,
        #[arg(long)]
        seed: PathBuf,
    },
    /// Rebuild the image of INDEX from SEED plus fetched chunks (store or pack).
    Assemble {
        #[arg(long)]
        index: PathBuf,
        #[arg(long)]
        seed: PathBuf,
        #[arg(long, conflicts_with = "pack", required_unless_present = "pack")]
        store: Option<PathBuf>,
        #[arg(long)]
        pack: Option<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create {
            old,
            new,
            output,
            level,
            segment_kib,
            copy_min,
            no_short_matches,
            no_zstd_frames,
        } => create(
            &old,
            &new,
            &output,
            CreateOptions {
                level,
                segment_data: segment_kib
                    .checked_mul(1024)
                    .context("segment size too large")?,
                copy_min,
                short_matches: !no_short_matches,
                zstd_frames: !no_zstd_frames,
                ..CreateOptions::default()
            },
        ),
        Command::Apply {
            seed,
            delta,
            output,
            checkpoint,
        } => apply(&seed, &delta, &output, checkpoint.as_deref()),
        Command::Inspect { file } => inspect(&file),
        Command::Index {
            image,
            output,
            store,
            pack,
            avg_kib,
            level,
        } => index(
            &image,
            &output,
            store.as_deref(),
            pack.as_deref(),
            avg_kib,
            level,
        ),
        Command::Plan { index, seed } => plan(&index, &seed),
        Command::Assemble {
            index,
            seed,
            store,
            pack,
            output,
        } => assemble(&index, &seed, store.as_deref(), pack.as_deref(), &output),
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn create(old: &Path, new: &Path, output: &Path, opts: CreateOptions) -> anyhow::Result<()> {
    let (old_data, new_data) = (read(old)?, read(new)?);
    let file = File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let report = keel_delta::create(&old_data, &new_data, &opts, BufWriter::new(file))?;
    println!(
        "delta {} bytes, {} segments, {} ops: copy {} add {} insert {} bytes",
        report.delta_size,
        report.segments,
        report.ops,
        report.copy_bytes,
        report.add_bytes,
        report.insert_bytes
    );
    if report.target_frames > 0 {
        println!(
            "zstd frames (zstd {}): {} target frames ({} bytes) recompressed on the device, {} seed frames expanded",
            keel_delta::frames::version_string(keel_delta::frames::zstd_version()),
            report.target_frames,
            report.target_frame_bytes,
            report.seed_frames
        );
    }
    Ok(())
}

fn apply(
    seed: &Path,
    delta: &Path,
    output: &Path,
    checkpoint: Option<&Path>,
) -> anyhow::Result<()> {
    let mut seed_file =
        File::open(seed).with_context(|| format!("opening seed {}", seed.display()))?;
    let mut delta_file = BufReader::with_capacity(
        1 << 20,
        File::open(delta).with_context(|| format!("opening delta {}", delta.display()))?,
    );
    // The whole structure first (its length taken up front): a truncated or corrupt delta is
    // refused before the seed is read or the output touched.
    keel_delta::scan(&mut delta_file).with_context(|| format!("delta {}", delta.display()))?;
    let resume = match checkpoint {
        Some(p) if p.exists() => Some(
            Checkpoint::from_bytes(&read(p)?)
                .with_context(|| format!("checkpoint {}", p.display()))?,
        ),
        _ => None,
    };
    let created = !output.exists();
    let mut out = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(output)
        .with_context(|| format!("opening output {}", output.display()))?;
    // fsync through a second descriptor syncs the same file's data.
    let sync_handle = File::open(output)?;
    let mut recorded = false;
    let mut run = |resume: Option<&Checkpoint>,
                   delta_file: &mut BufReader<File>,
                   out: &mut File|
     -> Result<keel_delta::ApplyReport, keel_delta::DeltaError> {
        delta_file.seek(std::io::SeekFrom::Start(0))?;
        keel_delta::apply_resumable(&mut seed_file, delta_file, out, resume, |cp| {
            if let Some(p) = checkpoint {
                sync_handle.sync_data()?;
                record_checkpoint(p, cp)?;
                recorded = true;
            }
            Ok(())
        })
    };
    let mut result = run(resume.as_ref(), &mut delta_file, &mut out);
    if let (Some(p), Err(keel_delta::DeltaError::TargetHashMismatch { .. })) = (checkpoint, &result)
    {
        // The prefix written before the interruption is damaged (or the checkpoint lies): resuming
        // again would fail the same way. Drop the checkpoint and apply from the seed once more.
        let _ = fs::remove_file(p);
        if resume.is_some() {
            eprintln!(
                "resumed apply ended in a target sha256 mismatch: dropped {} and applying again from the seed",
                p.display()
            );
            result = run(None, &mut delta_file, &mut out);
            if matches!(
                result,
                Err(keel_delta::DeltaError::TargetHashMismatch { .. })
            ) {
                let _ = fs::remove_file(p);
            }
        }
    }
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            // An output this command created and no checkpoint refers to is of no use: remove it
            // rather than leave an empty or partial file that looks like a result.
            if created && !(recorded && checkpoint.is_some_and(Path::exists)) {
                drop(out);
                let _ = fs::remove_file(output);
            }
            return Err(anyhow::Error::new(e).context(format!(
                "applying {} to {}",
                delta.display(),
                seed.display()
            )));
        }
    };
    // A regular file may hold a longer earlier content; a block device keeps its size.
    if out.metadata()?.is_file() {
        out.set_len(report.target_size)?;
    }
    out.sync_all()?;
    if let Some(p) = checkpoint {
        let _ = fs::remove_file(p);
    }
    println!(
        "applied: {} bytes, sha256 {} verified (copy {} add {} insert {}, resumed at {})",
        report.target_size,
        hex(&report.target_sha256),
        report.copied_bytes,
        report.added_bytes,
        report.inserted_bytes,
        report.resumed_from
    );
    Ok(())
}

/// Persists a checkpoint atomically (after the output data it describes was synced).
fn record_checkpoint(path: &Path, cp: &Checkpoint) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&cp.to_bytes())?;
    f.sync_all()?;
    fs::rename(tmp, path)
}

fn inspect(file: &Path) -> anyhow::Result<()> {
    let mut f = BufReader::new(File::open(file)?);
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic).context("file too short")?;
    if magic == chunk::INDEX_MAGIC {
        let index = ChunkIndex::from_bytes(&read(file)?)?;
        let distinct: std::collections::HashSet<_> = index.chunks.iter().map(|c| c.id).collect();
        let pack: u64 = index.pack_offsets().len() as u64;
        println!(
            "chunk index: image {} bytes sha256 {}",
            index.image_size,
            hex(&index.image_sha256)
        );
        println!(
            "  chunker fastcdc-2020 min/avg/max {}/{}/{}; {} chunks, {} distinct (pack entries {pack})",
            index.params.min,
            index.params.avg,
            index.params.max,
            index.chunks.len(),
            distinct.len()
        );
        return Ok(());
    }
    let mut f = BufReader::new(File::open(file)?);
    let header = keel_delta::apply::read_header(&mut f)?;
    println!("keel delta v1: {} segments", header.segment_count);
    println!(
        "  seed   {} bytes sha256 {}",
        header.seed_size,
        hex(&header.seed_sha256)
    );
    println!(
        "  target {} bytes sha256 {}",
        header.target_size,
        hex(&header.target_sha256)
    );
    println!(
        "  decoder buffers: data {} bytes, control {} bytes",
        header.max_segment_data, header.max_segment_ctrl
    );
    if header.zstd_frames {
        let layout = keel_delta::frames::FrameLayout::read(&mut f, &header)?;
        println!(
            "  zstd frames (zstd {}): seed {} frames, {} bytes expanded; target {} frames, {} bytes expanded",
            keel_delta::frames::version_string(layout.zstd_version),
            layout.seed.len(),
            layout.seed_expanded,
            layout.target.len(),
            layout.target_expanded
        );
    }
    let mut hb = [0u8; keel_delta::format::SEGMENT_HEADER_LEN];
    for i in 0..header.segment_count {
        f.read_exact(&mut hb)
            .with_context(|| format!("segment {i} header"))?;
        let s = keel_delta::SegmentHeader::parse(&hb, &header)?;
        println!(
            "  segment {i}: target {} bytes; ctrl {}→{} diff {}→{} extra {}→{}",
            s.target_len,
            s.ctrl_raw,
            s.ctrl_comp,
            s.diff_raw,
            s.diff_comp,
            s.extra_raw,
            s.extra_comp
        );
        let skip = u64::from(s.ctrl_comp) + u64::from(s.diff_comp) + u64::from(s.extra_comp);
        std::io::copy(&mut (&mut f).take(skip), &mut std::io::sink())?;
    }
    Ok(())
}

fn index(
    image: &Path,
    output: &Path,
    store: Option<&Path>,
    pack: Option<&Path>,
    avg_kib: u32,
    level: i32,
) -> anyhow::Result<()> {
    let params =
        ChunkParams::with_average(avg_kib.checked_mul(1024).context("chunk size too large")?);
    let store = store.map(DirStore::new);
    let mut pack_out = pack
        .map(|p| File::create(p).map(BufWriter::new))
        .transpose()?;
    let input = BufReader::with_capacity(1 << 20, File::open(image)?);
    let index = ChunkIndex::build(input, params, level, |entry, data| {
        if let Some(s) = &store {
            s.put(&entry.id, data)?;
        }
        if let Some(p) = pack_out.as_mut() {
            p.write_all(data)?;
        }
        Ok(())
    })?;
    if let Some(mut p) = pack_out {
        p.flush()?;
    }
    let bytes = index.to_bytes();
    fs::write(output, &bytes)?;
    println!("index {} bytes, {} chunks", bytes.len(), index.chunks.len());
    Ok(())
}

fn load_index(path: &Path) -> anyhow::Result<ChunkIndex> {
    ChunkIndex::from_bytes(&read(path)?).with_context(|| format!("parsing {}", path.display()))
}

fn plan(index_path: &Path, seed: &Path) -> anyhow::Result<()> {
    let index = load_index(index_path)?;
    let seed_chunks = SeedChunks::scan(
        BufReader::with_capacity(1 << 20, File::open(seed)?),
        index.params,
    )?;
    let plan = chunk::plan(&index, &seed_chunks);
    let index_bytes = fs::metadata(index_path)?.len();
    println!(
        "fetch {} chunks, {} bytes (+ index {} = {} bytes); {} bytes from the seed",
        plan.fetch_chunks,
        plan.fetch_bytes,
        index_bytes,
        plan.fetch_bytes + index_bytes,
        plan.seed_bytes
    );
    Ok(())
}

fn assemble(
    index_path: &Path,
    seed: &Path,
    store: Option<&Path>,
    pack: Option<&Path>,
    output: &Path,
) -> anyhow::Result<()> {
    let index = load_index(index_path)?;
    let seed_chunks = SeedChunks::scan(
        BufReader::with_capacity(1 << 20, File::open(seed)?),
        index.params,
    )?;
    let plan = chunk::plan(&index, &seed_chunks);
    let mut seed_file = File::open(seed)?;
    let mut out = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(output)?;
    let report = match (store, pack) {
        (Some(s), _) => chunk::assemble(
            &index,
            &plan,
            &mut seed_file,
            &mut DirStore::new(s),
            &mut out,
        )?,
        (None, Some(p)) => {
            let mut reader = PackReader {
                pack: File::open(p)?,
                bytes_read: 0,
            };
            chunk::assemble(&index, &plan, &mut seed_file, &mut reader, &mut out)?
        }
        (None, None) => bail!("give --store or --pack"),
    };
    if out.metadata()?.is_file() {
        out.set_len(index.image_size)?;
    }
    out.sync_all()?;
    println!(
        "assembled {} chunks: {} from seed, {} already in target, {} repeated, {} fetched ({} bytes); sha256 {} verified",
        report.chunks,
        report.from_seed,
        report.already_in_target,
        report.from_earlier,
        report.fetched_chunks,
        report.fetched_bytes,
        hex(&index.image_sha256)
    );
    Ok(())
}
