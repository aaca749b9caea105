//! `keel bundle` commands: create, verify, inspect, extract SWUpdate `.swu` bundles.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use keel_bundle::{BundleSpec, CreateOptions, Report};
use keel_sign::aes::AesKey;
use keel_sign::{CertPurpose, Signer, Verifier};

#[derive(Subcommand)]
pub enum Command {
    /// Build a .swu from a TOML manifest or an existing sw-description plus an image directory.
    ///
    /// Output is byte-reproducible: member metadata is fixed and SOURCE_DATE_EPOCH (if set) is
    /// the only timestamp used.
    Create(CreateArgs),
    /// Check the signature and every image hash; non-zero exit naming what failed.
    Verify(VerifyArgs),
    /// Show what a bundle contains (signature checked only if --cert/--ca is given).
    Inspect(InspectArgs),
    /// Verify and extract the members into a directory (decrypting with --aes-key).
    Extract(ExtractArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// TOML manifest (see docs/swu-format.md).
    #[arg(
        long,
        short = 'm',
        conflicts_with = "sw_description",
        required_unless_present = "sw_description"
    )]
    manifest: Option<PathBuf>,
    /// An existing sw-description (libconfig or JSON) to complete with hashes.
    #[arg(long)]
    sw_description: Option<PathBuf>,
    /// Directory holding the images named in --sw-description (default: its directory).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Output .swu file (written to a temporary name, renamed when complete).
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Signer certificate (PEM, optionally followed by intermediates).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Signer private key (PEM: RSA, EC P-256/P-384).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// AES key file in `swupdate -K` format ("<hex key> <hex iv>") for entries with encrypted = true.
    #[arg(long)]
    aes_key: Option<PathBuf>,
    /// Timestamp for cpio mtimes and the CMS signingTime (unix seconds).
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    source_date_epoch: Option<u64>,
    /// Allow an unsigned bundle (SWUpdate built with signed images rejects it).
    #[arg(long)]
    unsigned: bool,
    /// The extendedKeyUsage the devices require of the signer (`swupdate --cert-purpose`;
    /// keel-agent requires emailProtection): a certificate they would refuse is refused here.
    #[arg(long, value_enum, default_value = "emailProtection")]
    cert_purpose: Purpose,
}

#[derive(Clone, Copy, ValueEnum)]
enum Purpose {
    #[value(name = "emailProtection")]
    EmailProtection,
    #[value(name = "codeSigning")]
    CodeSigning,
    #[value(name = "any")]
    Any,
}

impl From<Purpose> for CertPurpose {
    fn from(purpose: Purpose) -> CertPurpose {
        match purpose {
            Purpose::EmailProtection => CertPurpose::EmailProtection,
            Purpose::CodeSigning => CertPurpose::CodeSigning,
            Purpose::Any => CertPurpose::Any,
        }
    }
}

#[derive(Args)]
pub struct TrustArgs {
    /// Trusted signer certificate (like `swupdate -k`).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Trusted CA certificate(s) (like `swupdate --ca-path`).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Required extendedKeyUsage of the signer (like `swupdate --cert-purpose`).
    #[arg(long, value_enum, default_value = "emailProtection")]
    cert_purpose: Purpose,
}

#[derive(Args)]
pub struct VerifyArgs {
    bundle: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    bundle: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExtractArgs {
    bundle: PathBuf,
    /// Directory to extract into (created if missing).
    #[arg(long, short = 'd')]
    dir: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
    /// AES key file to decrypt encrypted images.
    #[arg(long)]
    aes_key: Option<PathBuf>,
    /// Extract without checking the signature (hashes are still checked).
    #[arg(long)]
    no_signature_check: bool,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn load_aes_key(path: &Path) -> anyhow::Result<AesKey> {
    let text = String::from_utf8(read(path)?)
        .with_context(|| format!("{} is not text", path.display()))?;
    AesKey::parse_keyfile(&text).with_context(|| format!("AES key file {}", path.display()))
}

impl TrustArgs {
    fn verifier(&self) -> anyhow::Result<Option<Verifier>> {
        let mut pem = Vec::new();
        for path in [&self.cert, &self.ca].into_iter().flatten() {
            pem.extend(read(path)?);
            pem.push(b'\n');
        }
        if pem.is_empty() {
            return Ok(None);
        }
        let verifier = Verifier::from_pem(&pem).context("loading trusted certificates")?;
        Ok(Some(verifier.with_purpose(self.cert_purpose.into())))
    }
}

fn open_bundle(path: &Path) -> anyhow::Result<BufReader<File>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(BufReader::with_capacity(256 * 1024, file))
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.to_human());
    }
    Ok(())
}

fn create(args: CreateArgs) -> anyhow::Result<()> {
    let spec = match (&args.manifest, &args.sw_description) {
        (Some(m), _) => BundleSpec::from_manifest(m)?,
        (None, Some(d)) => {
            let dir = match &args.images {
                Some(dir) => dir.clone(),
                None => d.parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            BundleSpec::from_sw_description(d, &dir)?
        }
        (None, None) => bail!("give --manifest or --sw-description"),
    };
    let signer = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => {
            let signer = Signer::from_pem(&read(c)?, &read(k)?).context("loading signing key")?;
            signer.check_purpose(args.cert_purpose.into()).with_context(|| {
                format!(
                    "refusing to sign with {}: `keel bundle verify` and swupdate would reject the bundle; \
                     use a certificate with extendedKeyUsage emailProtection (openssl: \
                     -addext extendedKeyUsage=emailProtection), or --cert-purpose codeSigning/any \
                     if the devices are configured for it",
                    c.display()
                )
            })?;
            Some(signer)
        }
        _ if args.unsigned => None,
        _ => bail!("give --cert and --key to sign the bundle, or --unsigned"),
    };
    let aes_key = args.aes_key.as_deref().map(load_aes_key).transpose()?;
    let options = CreateOptions {
        signer,
        aes_key,
        source_date_epoch: args.source_date_epoch,
    };

    let file_name = args
        .output
        .file_name()
        .context("--output has no file name")?
        .to_string_lossy()
        .into_owned();
    let tmp = args.output.with_file_name(format!(".{file_name}.tmp"));
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    // Packs of `chunked = true` images go next to the bundle (the agent fetches them from there).
    let pack_dir = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let result = keel_bundle::create_with_packs(&spec, &options, Some(&pack_dir), &mut out);
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            drop(out);
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    };
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.output)
        .with_context(|| format!("renaming to {}", args.output.display()))?;

    let stdout = std::io::stdout();
    let mut o = stdout.lock();
    writeln!(
        o,
        "wrote {} ({} bytes, {})",
        args.output.display(),
        report.bytes_written,
        if report.signed { "signed" } else { "UNSIGNED" }
    )?;
    for m in &report.members {
        writeln!(
            o,
            "  {:<32} {:>12} bytes  sha256 {}{}",
            m.name,
            m.size,
            m.sha256,
            if m.encrypted { "  [encrypted]" } else { "" }
        )?;
    }
    for (member, how) in &spec.derived {
        match how {
            keel_bundle::Derivation::Delta { target, seed } => {
                writeln!(o, "  {member}: static delta {} -> {target}", seed.display())?
            }
            keel_bundle::Derivation::Chunked { target, pack } => writeln!(
                o,
                "  {member}: chunk index of {target}; pack {}",
                pack_dir.join(pack).display()
            )?,
        }
    }
    Ok(())
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create(args) => create(args),
        Command::Verify(args) => {
            let Some(verifier) = args.trust.verifier()? else {
                bail!("give --cert (trusted signer certificate) or --ca (trusted CA) to verify the signature");
            };
            let result = keel_bundle::verify(open_bundle(&args.bundle)?, &verifier)
                .with_context(|| format!("{} failed verification", args.bundle.display()));
            match result {
                Ok(report) => print_report(&report, args.json),
                Err(e) => {
                    // Scripts reading --json get an answer on stdout either way.
                    if args.json {
                        let problems = match e.downcast_ref::<keel_bundle::BundleError>() {
                            Some(keel_bundle::BundleError::Verification { problems }) => {
                                problems.clone()
                            }
                            _ => Vec::new(),
                        };
                        let answer = serde_json::json!({
                            "bundle": args.bundle.display().to_string(),
                            "verified": false,
                            "error": format!("{e:#}"),
                            "problems": problems,
                        });
                        println!("{}", serde_json::to_string_pretty(&answer)?);
                    }
                    Err(e)
                }
            }
        }
        Command::Inspect(args) => {
            let verifier = args.trust.verifier()?;
            let report = keel_bundle::inspect(open_bundle(&args.bundle)?, verifier.as_ref())
                .with_context(|| format!("inspecting {}", args.bundle.display()))?;
            print_report(&report, args.json)
        }
        Command::Extract(args) => {
            let verifier = args.trust.verifier()?;
            if verifier.is_none() && !args.no_signature_check {
                bail!("give --cert or --ca to check the signature (or --no-signature-check)");
            }
            let aes_key = args.aes_key.as_deref().map(load_aes_key).transpose()?;
            let report = keel_bundle::extract(
                open_bundle(&args.bundle)?,
                &args.dir,
                verifier.as_ref(),
                aes_key.as_ref(),
            )
            .with_context(|| format!("extracting {}", args.bundle.display()))?;
            println!(
                "extracted {} members into {}",
                report.members.len(),
                args.dir.display()
            );
            Ok(())
        }
    }
}
