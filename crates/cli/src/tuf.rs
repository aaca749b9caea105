//! `keel tuf` commands: offline root tasks (init, rotate-root, rotate-online-key, sign-root), online repository
//! tasks (add-target, publish) and `client`, a TUF client for conformance suites (tuf-conformance CLIENT-CLI.md).
//!
//! A repository directory holds `metadata/` (serve as the metadata URL) and `targets/` (the target URL).
//! Keys are PKCS#8 PEM files (`keel tuf gen-key`, or `openssl genpkey -algorithm ed25519` / `-algorithm EC
//! -pkeyopt ec_paramgen_curve:P-256`); public keys are SubjectPublicKeyInfo PEM (a private key file also works).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use keel_tuf::{FetchError, Fetcher, FileFetcher, HttpFetcher, TimePolicy, Updater, UpdaterConfig};
use keel_tuf_repo::{OnlineKeys, PublicKeyJson, RepoConfig, Repository, RootKeys, SigningKey};

const DAY: i64 = 86_400;

#[derive(Subcommand)]
pub enum Command {
    /// Generate a signing key (PKCS#8 PEM) and its public key (`<out>.pub`).
    GenKey(GenKeyArgs),
    /// Create version 1 of a repository's root (offline): root keys, threshold, online public keys.
    Init(InitArgs),
    /// Add files as targets and publish (online keys).
    AddTarget(AddTargetArgs),
    /// Re-sign roles that are about to expire and publish pending changes (online keys).
    Publish(PublishArgs),
    /// Write a new root version with new root keys, signed by the current and the new root keys (offline).
    RotateRoot(RotateRootArgs),
    /// Write a new root version in which one online role has a new key (offline); then publish with it.
    RotateOnlineKey(RotateOnlineKeyArgs),
    /// Add a signature to the newest root (multi-party root signing).
    SignRoot(SignRootArgs),
    /// TUF client for conformance suites: `client --metadata-dir D init ROOT`, `... --metadata-url U refresh`,
    /// `... --target-name N --target-base-url U --target-dir D download`. Exit 0 on success, 1 on failure.
    Client(ClientArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyType {
    Ed25519,
    EcdsaP256,
}

#[derive(Args)]
pub struct GenKeyArgs {
    /// Key type.
    #[arg(long = "type", value_enum, default_value = "ed25519")]
    key_type: KeyType,
    /// Private key output (PKCS#8 PEM, mode 0600); the public key goes to `<out>.pub`.
    #[arg(long, short = 'o')]
    out: PathBuf,
}

#[derive(Args)]
pub struct InitArgs {
    /// Repository directory.
    #[arg(long)]
    repo: PathBuf,
    /// Root private key (repeat for several root keys).
    #[arg(long = "root-key", required = true)]
    root_keys: Vec<PathBuf>,
    /// Root keys needed to sign a root.
    #[arg(long, default_value_t = 1)]
    threshold: u64,
    #[command(flatten)]
    online: OnlinePublicKeys,
    /// Root lifetime in days.
    #[arg(long, default_value_t = 365)]
    expires_days: i64,
}

#[derive(Args)]
struct OnlinePublicKeys {
    /// Public key for targets, snapshot and timestamp (unless given per role).
    #[arg(long)]
    online_key: Option<PathBuf>,
    /// Public key for targets.
    #[arg(long)]
    targets_key: Option<PathBuf>,
    /// Public key for snapshot.
    #[arg(long)]
    snapshot_key: Option<PathBuf>,
    /// Public key for timestamp.
    #[arg(long)]
    timestamp_key: Option<PathBuf>,
}

#[derive(Args)]
struct OnlinePrivateKeys {
    /// Private key for targets, snapshot and timestamp (unless given per role).
    #[arg(long)]
    online_key: Option<PathBuf>,
    /// Private key for targets.
    #[arg(long)]
    targets_key: Option<PathBuf>,
    /// Private key for snapshot.
    #[arg(long)]
    snapshot_key: Option<PathBuf>,
    /// Private key for timestamp.
    #[arg(long)]
    timestamp_key: Option<PathBuf>,
    /// Hashed bins for targets (power of two up to 4096; 0 lists targets in targets.json). Fixed at the first
    /// publish.
    #[arg(long, default_value_t = 16)]
    bins: u32,
}

#[derive(Args)]
pub struct AddTargetArgs {
    /// Repository directory.
    #[arg(long)]
    repo: PathBuf,
    #[command(flatten)]
    keys: OnlinePrivateKeys,
    /// Target name (only with a single file; default: the file name).
    #[arg(long)]
    name: Option<String>,
    /// Files to add.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct PublishArgs {
    /// Repository directory.
    #[arg(long)]
    repo: PathBuf,
    #[command(flatten)]
    keys: OnlinePrivateKeys,
}

#[derive(Args)]
pub struct RotateRootArgs {
    /// Repository directory.
    #[arg(long)]
    repo: PathBuf,
    /// Current root private key (repeat up to the current threshold).
    #[arg(long = "sign-key", required = true)]
    sign_keys: Vec<PathBuf>,
    /// New root private key (repeat; each signs the new root).
    #[arg(long = "new-root-key", required = true)]
    new_root_keys: Vec<PathBuf>,
    /// New root threshold.
    #[arg(long, default_value_t = 1)]
    threshold: u64,
    /// New root lifetime in days.
    #[arg(long, default_value_t = 365)]
    expires_days: i64,
}

#[derive(Clone, Copy, ValueEnum)]
enum OnlineRole {
    Targets,
    Snapshot,
    Timestamp,
}

#[derive(Args)]
pub struct RotateOnlineKeyArgs {
    /// Repository directory.
    #[arg(long)]
    repo: PathBuf,
    /// Root private key (repeat up to the root threshold).
    #[arg(long = "sign-key", required = true)]
    sign_keys: Vec<PathBuf>,
    /// The online role whose key changes.
    #[arg(long, value_enum)]
    role: OnlineRole,
    /// The role's new public key.
    #[arg(long)]
    new_key: PathBuf,
    /// New root lifetime in days.
    #[arg(long, default_value_t = 365)]
    expires_days: i64,
}

#[derive(Args)]
pub struct SignRootArgs {
    /// Repository directory.
    #[arg(long)]
    repo: PathBuf,
    /// Private key to sign with (repeat).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ClientArgs {
    /// Directory of trusted metadata (root.json, timestamp.json, ...).
    #[arg(long, global = true)]
    metadata_dir: Option<PathBuf>,
    /// Base URL of the repository's metadata (http://, https:// or file://).
    #[arg(long, global = true)]
    metadata_url: Option<String>,
    /// Target to download (repeatable).
    #[arg(long = "target-name", global = true)]
    target_names: Vec<String>,
    /// Base URL of the targets.
    #[arg(long, global = true)]
    target_base_url: Option<String>,
    /// Where downloaded targets are written (file name: the percent-encoded target name).
    #[arg(long, global = true)]
    target_dir: Option<PathBuf>,
    #[command(subcommand)]
    action: ClientAction,
}

#[derive(Subcommand)]
enum ClientAction {
    /// Trust ROOT (a root.json signed by its own root keys).
    Init {
        /// The initial trusted root metadata file.
        root: PathBuf,
    },
    /// Update metadata.
    Refresh,
    /// Update metadata and download the --target-name targets (cached ones are kept).
    Download,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::GenKey(args) => gen_key(args),
        Command::Init(args) => init(args),
        Command::AddTarget(args) => add_target(args),
        Command::Publish(args) => publish(args),
        Command::RotateRoot(args) => rotate_root(args),
        Command::RotateOnlineKey(args) => rotate_online_key(args),
        Command::SignRoot(args) => sign_root(args),
        Command::Client(args) => client(args),
    }
}

fn now() -> i64 {
    keel_tuf::time::system_now()
}

fn read_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    SigningKey::from_pkcs8_pem(&text).with_context(|| format!("{}", path.display()))
}

fn read_public_key(path: &Path) -> anyhow::Result<PublicKeyJson> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    PublicKeyJson::from_pem(&text).with_context(|| format!("{}", path.display()))
}

fn gen_key(args: GenKeyArgs) -> anyhow::Result<()> {
    let key = match args.key_type {
        KeyType::Ed25519 => SigningKey::generate_ed25519(),
        KeyType::EcdsaP256 => SigningKey::generate_ecdsa_p256(),
    };
    write_private(&args.out, &key.to_pkcs8_pem()?)?;
    let public = PathBuf::from(format!("{}.pub", args.out.display()));
    std::fs::write(&public, key.public_pem()?)
        .with_context(|| format!("writing {}", public.display()))?;
    println!("{}", key.key_id());
    Ok(())
}

fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn online_public(keys: &OnlinePublicKeys) -> anyhow::Result<[PublicKeyJson; 3]> {
    let pick = |specific: &Option<PathBuf>, role: &str| -> anyhow::Result<PublicKeyJson> {
        match specific.as_ref().or(keys.online_key.as_ref()) {
            Some(path) => read_public_key(path),
            None => bail!("no key for {role}: give --online-key or --{role}-key"),
        }
    };
    Ok([
        pick(&keys.targets_key, "targets")?,
        pick(&keys.snapshot_key, "snapshot")?,
        pick(&keys.timestamp_key, "timestamp")?,
    ])
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    if args.repo.join("metadata/root.json").exists() {
        bail!("{} already has a root", args.repo.display());
    }
    let signers = args
        .root_keys
        .iter()
        .map(|p| read_signing_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let [targets, snapshot, timestamp] = online_public(&args.online)?;
    let keys = RootKeys {
        root: signers.iter().map(SigningKey::public).collect(),
        root_threshold: args.threshold,
        targets: vec![targets],
        snapshot: vec![snapshot],
        timestamp: vec![timestamp],
    };
    let signer_refs: Vec<&SigningKey> = signers.iter().collect();
    keel_tuf_repo::create_root(
        &args.repo,
        &keys,
        &signer_refs,
        now() + args.expires_days * DAY,
    )?;
    println!("{}", args.repo.join("metadata/1.root.json").display());
    Ok(())
}

fn open_repository(repo: &Path, keys: &OnlinePrivateKeys) -> anyhow::Result<Repository> {
    let pick = |specific: &Option<PathBuf>, role: &str| -> anyhow::Result<SigningKey> {
        match specific.as_ref().or(keys.online_key.as_ref()) {
            Some(path) => read_signing_key(path),
            None => bail!("no key for {role}: give --online-key or --{role}-key"),
        }
    };
    let online = OnlineKeys {
        targets: pick(&keys.targets_key, "targets")?,
        snapshot: pick(&keys.snapshot_key, "snapshot")?,
        timestamp: pick(&keys.timestamp_key, "timestamp")?,
    };
    let config = RepoConfig {
        bins: keys.bins,
        ..RepoConfig::default()
    };
    Ok(Repository::open(repo, online, config)?)
}

fn add_target(args: AddTargetArgs) -> anyhow::Result<()> {
    if args.name.is_some() && args.files.len() != 1 {
        bail!("--name needs exactly one file");
    }
    let mut repository = open_repository(&args.repo, &args.keys)?;
    for file in &args.files {
        let name = match &args.name {
            Some(name) => name.clone(),
            None => file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .with_context(|| format!("{} has no file name", file.display()))?,
        };
        let entry = repository.add_target_file(&name, file)?;
        println!("{name} {} sha256:{}", entry.length, entry.hashes["sha256"]);
    }
    let written = repository.publish(now())?;
    println!("published {}", written.join(" "));
    Ok(())
}

fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let mut repository = open_repository(&args.repo, &args.keys)?;
    let report = repository.refresh_expiring(now())?;
    if report.resigned.is_empty() {
        println!("nothing to re-sign");
    } else {
        println!("published {}", report.resigned.join(" "));
    }
    if report.root_expires_soon {
        eprintln!("keel: warning: root expires within 30 days; run `keel tuf rotate-root` with the root keys");
    }
    Ok(())
}

fn rotate_root(args: RotateRootArgs) -> anyhow::Result<()> {
    let mut signers = args
        .sign_keys
        .iter()
        .map(|p| read_signing_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let new_keys = args
        .new_root_keys
        .iter()
        .map(|p| read_signing_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (_, signed, _) = keel_tuf_repo::current_root(&args.repo)?;
    let mut keys = RootKeys::from_signed(&signed)?;
    keys.root = new_keys.iter().map(SigningKey::public).collect();
    keys.root_threshold = args.threshold;
    signers.extend(new_keys);
    let refs: Vec<&SigningKey> = signers.iter().collect();
    let bytes =
        keel_tuf_repo::rotate_root(&args.repo, &keys, &refs, now() + args.expires_days * DAY)?;
    report_root(&bytes)
}

fn rotate_online_key(args: RotateOnlineKeyArgs) -> anyhow::Result<()> {
    let signers = args
        .sign_keys
        .iter()
        .map(|p| read_signing_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let new_key = read_public_key(&args.new_key)?;
    let (_, signed, _) = keel_tuf_repo::current_root(&args.repo)?;
    let mut keys = RootKeys::from_signed(&signed)?;
    match args.role {
        OnlineRole::Targets => keys.targets = vec![new_key],
        OnlineRole::Snapshot => keys.snapshot = vec![new_key],
        OnlineRole::Timestamp => keys.timestamp = vec![new_key],
    }
    let refs: Vec<&SigningKey> = signers.iter().collect();
    let bytes =
        keel_tuf_repo::rotate_root(&args.repo, &keys, &refs, now() + args.expires_days * DAY)?;
    report_root(&bytes)
}

fn sign_root(args: SignRootArgs) -> anyhow::Result<()> {
    let signers = args
        .keys
        .iter()
        .map(|p| read_signing_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<&SigningKey> = signers.iter().collect();
    let (version, _, bytes) = keel_tuf_repo::current_root(&args.repo)?;
    let signed = keel_tuf_repo::add_signatures(&bytes, &refs)?;
    let metadata = args.repo.join("metadata");
    for name in [format!("{version}.root.json"), "root.json".to_string()] {
        let path = metadata.join(name);
        keel_tuf::store::write_atomically(&path, &signed)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    report_root(&signed)
}

fn report_root(bytes: &[u8]) -> anyhow::Result<()> {
    let value: serde_json::Value = serde_json::from_slice(bytes)?;
    println!("root version {} written", value["signed"]["version"]);
    Ok(())
}

/// Picks the local-file or the HTTP fetcher by URL scheme.
struct AnyFetcher {
    http: HttpFetcher,
}

impl Fetcher for AnyFetcher {
    fn open(&self, url: &str) -> Result<Box<dyn Read + '_>, FetchError> {
        if url.starts_with("file://") {
            FileFetcher.open(url)
        } else {
            self.http.open(url)
        }
    }
}

fn client(args: ClientArgs) -> anyhow::Result<()> {
    let metadata_dir = args
        .metadata_dir
        .as_deref()
        .context("--metadata-dir is required")?;
    if let ClientAction::Init { root } = &args.action {
        let data = std::fs::read(root).with_context(|| format!("reading {}", root.display()))?;
        keel_tuf::init_trusted_root(metadata_dir, &data)?;
        return Ok(());
    }
    let metadata_url = args
        .metadata_url
        .as_deref()
        .context("--metadata-url is required")?;
    let fetcher = AnyFetcher {
        http: HttpFetcher::default(),
    };
    let mut updater = Updater::new(
        metadata_dir,
        metadata_url,
        args.target_base_url.as_deref(),
        fetcher,
        UpdaterConfig::default(),
        TimePolicy::default(),
    )?;
    updater.refresh()?;
    if let ClientAction::Download = args.action {
        let target_dir = args
            .target_dir
            .as_deref()
            .context("--target-dir is required")?;
        args.target_base_url
            .as_deref()
            .context("--target-base-url is required")?;
        std::fs::create_dir_all(target_dir)
            .with_context(|| format!("creating {}", target_dir.display()))?;
        for name in &args.target_names {
            let info = updater.require_target(name)?;
            let path = target_dir.join(keel_tuf::store::percent_encode(name));
            if keel_tuf::updater::is_cached_target(&info, &path) {
                continue;
            }
            updater.download_target_to_file(&info, &path)?;
        }
    }
    Ok(())
}
