//! Command-line administration (`keel-server create-token`, `keel-server create-user`): the only
//! way to create cross-tenant tokens and accounts, which no API request can mint
//! (docs/security.md). They open the database directly; the server may be running.

use crate::auth::{self, Role};
use crate::store::Store;
use anyhow::{bail, Context};
use std::io::BufRead;
use std::path::PathBuf;

/// What the command line can do besides serving.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Create a management API token and print it (or write it to --output, mode 0600).
    CreateToken {
        /// A name to recognise the token by in lists and the audit log.
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "admin")]
        role: String,
        /// Which tenant the token acts on (`--tenant NAME` or `--cross-tenant`).
        #[command(flatten)]
        scope: Scope,
        /// Write the token to this file (mode 0600) instead of printing it.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Create a dashboard account; the password is read from the first line of standard input.
    CreateUser {
        /// The login name, unique within its tenant.
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "admin")]
        role: String,
        /// Which tenant the account acts on (`--tenant NAME` or `--cross-tenant`).
        #[command(flatten)]
        scope: Scope,
    },
    /// Print the shell completion script for SHELL (packaging; `KEEL_DATA_DIR` may point
    /// anywhere, nothing is opened).
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Which tenant a credential belongs to: exactly one of the two.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct Scope {
    /// The one tenant the credential may act on.
    #[arg(long)]
    tenant: Option<String>,
    /// A credential for every tenant (a super-admin for operating the whole server).
    #[arg(long)]
    cross_tenant: bool,
}

async fn tenant_id(store: &Store, scope: &Scope) -> anyhow::Result<Option<i64>> {
    match &scope.tenant {
        Some(name) => match store.tenant_by_name(name).await? {
            Some(tenant) => Ok(Some(tenant.id)),
            None => bail!("tenant {name:?} does not exist (create it with POST /rest/v1/tenants)"),
        },
        None => Ok(None),
    }
}

fn role(text: &str) -> anyhow::Result<Role> {
    Role::parse(text).with_context(|| format!("role {text:?}: expected viewer, operator or admin"))
}

/// Runs one administration command against the configured database.
pub async fn run(config: &crate::Config, command: &Command) -> anyhow::Result<()> {
    if let Command::Completions { shell } = command {
        let mut cli = <crate::Config as clap::CommandFactory>::command();
        // Into a buffer first: clap_complete panics on a failed write (e.g. a closed pipe).
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut cli, "keel-server", &mut script);
        return std::io::Write::write_all(&mut std::io::stdout(), &script)
            .context("writing the completion script");
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let store = Store::open(&config.data_dir, config.database_url.as_deref())
        .await
        .context("opening database")?;
    let result = run_on(&store, command).await;
    store.close().await;
    result
}

async fn run_on(store: &Store, command: &Command) -> anyhow::Result<()> {
    match command {
        // Printed by `run` before any database is opened.
        Command::Completions { .. } => Ok(()),
        Command::CreateToken {
            name,
            role: role_text,
            scope,
            output,
        } => {
            let role = role(role_text)?;
            let tenant = tenant_id(store, scope).await?;
            let token = auth::generate_token();
            store
                .create_api_token(name, &auth::hash_token(&token), role.as_str(), tenant)
                .await
                .context("storing the token")?;
            match output {
                Some(path) => {
                    crate::write_secret(path, &token)?;
                    println!(
                        "token {name:?} ({}) written to {}",
                        role.as_str(),
                        path.display()
                    );
                }
                None => println!("{token}"),
            }
            Ok(())
        }
        Command::CreateUser {
            name,
            role: role_text,
            scope,
        } => {
            let role = role(role_text)?;
            let tenant = tenant_id(store, scope).await?;
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.chars().count() < 12 {
                bail!("the password must have at least 12 characters");
            }
            let hash = crate::dashboard::hash_password(password)
                .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
            store
                .create_dashboard_user(tenant, name, &hash, role.as_str())
                .await
                .with_context(|| {
                    format!("creating dashboard user {name:?} (does it exist already?)")
                })?;
            println!("dashboard user {name:?} ({}) created", role.as_str());
            Ok(())
        }
    }
}
