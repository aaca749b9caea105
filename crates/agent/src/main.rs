//! `keel-agent`: the device agent command line. See docs/agent.md.

use std::path::PathBuf;
use std::process::ExitCode;

use keel_agent::chunks::PackSource;
use keel_agent::media::MediaOutcome;
use keel_agent::{source, Agent, Config, ConfirmOutcome, InstallOptions, Status};

const USAGE: &str = "\
usage: keel-agent [-c CONFIG] COMMAND

commands:
  install <FILE|-|URL> [--pack FILE | --pack-url URL]
                           stream a signed .swu into the inactive slot and activate it
                           (packs of keel-chunked images: default next to FILE/URL)
  status [--json]          booted slot, update state, pending action, last result
  confirm [--health-check CMD]
                           mark the booted slot good (after CMD succeeds, if given)
  run [--once]             hawkBit DDI client: poll, install, report (incl. after reboot)
  media <MOUNTPOINT>       install the newest valid, compatible, not yet installed bundle
                           of MOUNTPOINT/keel-updates/*.swu, then run reboot_command

options:
  -c, --config PATH        configuration file (default $KEEL_AGENT_CONFIG or /etc/keel/agent.toml)
  -h, --help               this help
  -V, --version            the agent's version
";

enum Command {
    Install { source: String, packs: PackSource },
    Status { json: bool },
    Confirm { health_check: Option<String> },
    Run { once: bool },
    Media { mountpoint: PathBuf },
}

fn parse_args() -> Result<(PathBuf, Command), lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut config = std::env::var_os("KEEL_AGENT_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/keel/agent.toml"));
    let mut command: Option<String> = None;
    let mut positional: Vec<String> = Vec::new();
    let mut json = false;
    let mut once = false;
    let mut health_check = None;
    let mut packs = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('c') | Long("config") => config = parser.value()?.into(),
            Long("json") => json = true,
            Long("once") => once = true,
            Long("health-check") => health_check = Some(parser.value()?.string()?),
            Long("pack") => packs = Some(PackSource::File(parser.value()?.into())),
            Long("pack-url") => packs = Some(PackSource::Url(parser.value()?.string()?)),
            Short('h') | Long("help") => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            Short('V') | Long("version") => {
                println!("keel-agent {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            Value(v) if command.is_none() => command = Some(v.string()?),
            Value(v) => positional.push(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let command = match command.as_deref() {
        Some("install") => {
            let [source] = <[String; 1]>::try_from(positional).map_err(|_| {
                lexopt::Error::from("install takes exactly one source (FILE, - or URL)")
            })?;
            let packs = packs.unwrap_or_else(|| PackSource::beside(&source));
            Command::Install { source, packs }
        }
        Some("status") => Command::Status { json },
        Some("confirm") => Command::Confirm { health_check },
        Some("run") => Command::Run { once },
        Some("media") => {
            let [mountpoint] = <[String; 1]>::try_from(positional)
                .map_err(|_| lexopt::Error::from("media takes exactly one mount point"))?;
            Command::Media {
                mountpoint: mountpoint.into(),
            }
        }
        Some(other) => return Err(format!("unknown command {other:?}").into()),
        None => return Err("missing command".into()),
    };
    Ok((config, command))
}

fn print_status(status: &Status, max_attempts: u32) {
    println!("booted slot:  {}", status.booted_slot);
    println!("other slot:   {}", status.other_slot);
    println!("bootloader:   {}", status.bootloader);
    println!("ustate:       {}", status.ustate);
    println!(
        "next boot:    {}",
        status.next_boot.map_or("?".to_string(), |s| s.to_string())
    );
    println!("state:        {}", status.state);
    match &status.pending {
        Some(tx) => println!(
            "pending:      {} -> {} ({}){}{}",
            tx.from_slot,
            tx.target_slot,
            tx.phase,
            tx.version
                .as_ref()
                .map_or(String::new(), |v| format!(" version {v}")),
            tx.action_id
                .as_ref()
                .map_or(String::new(), |a| format!(" action {a}"))
        ),
        None => println!("pending:      none"),
    }
    match &status.last_result {
        Some(r) => println!(
            "last result:  {} (slot {}{}): {}",
            r.outcome,
            r.target_slot,
            r.version
                .as_ref()
                .map_or(String::new(), |v| format!(", version {v}")),
            r.message
        ),
        None => println!("last result:  none"),
    }
    if let Some(m) = &status.last_media {
        println!(
            "last media:   {}{}: {}",
            m.outcome,
            m.version
                .as_ref()
                .map_or(String::new(), |v| format!(" (version {v})")),
            m.message
        );
    }
    if let Some(i) = &status.interrupted {
        println!(
            "interrupted:  action {}, {} attempt(s) of at most {} cut off before activation (installed again when the server offers it): {}",
            i.action_id, i.attempts, max_attempts, i.message
        );
    }
    for (key, value) in &status.bootloader_details {
        println!("  {key}: {value}");
    }
}

fn run() -> Result<(), String> {
    let (config_path, command) = parse_args().map_err(|e| format!("{e}\n\n{USAGE}"))?;
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    let mut agent = Agent::open_os(config).map_err(|e| e.to_string())?;
    match command {
        Command::Install { source, packs } => {
            let reader = source::open(&source, &agent.config.tls).map_err(|e| e.to_string())?;
            let report = agent
                .install(
                    reader,
                    InstallOptions {
                        packs,
                        ..Default::default()
                    },
                )
                .map_err(|e| format!("install failed: {e}"))?;
            if report.chunked.image_bytes > 0 {
                let c = &report.chunked;
                eprintln!(
                    "chunked images: {} bytes; {} chunks from the booted slot, {} already in place, {} fetched ({} bytes in {} requests)",
                    c.image_bytes, c.seed_chunks, c.kept_chunks, c.fetched_chunks, c.fetched_bytes, c.requests
                );
            }
            for (name, path, bytes) in &report.images {
                eprintln!(
                    "wrote {name} -> {} ({bytes} bytes, sha256 ok)",
                    path.display()
                );
            }
            eprintln!(
                "installed{} into slot {} (signed by {}); reboot to test it, then run `keel-agent confirm`",
                report.version.as_ref().map_or(String::new(), |v| format!(" version {v}")),
                report.target,
                report.signer
            );
        }
        Command::Status { json } => {
            let status = agent.status().map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?
                );
            } else {
                print_status(&status, agent.config.max_interrupted_attempts);
            }
        }
        Command::Confirm { health_check } => {
            match agent
                .confirm(health_check.as_deref())
                .map_err(|e| format!("confirm failed: {e}"))?
            {
                ConfirmOutcome::Confirmed(slot) => eprintln!("slot {slot} confirmed"),
                ConfirmOutcome::AlreadyGood(slot) => {
                    eprintln!("slot {slot} is good (nothing was being tested)")
                }
            }
        }
        Command::Run { once } => {
            keel_agent::ddi::run(&mut agent, once).map_err(|e| e.to_string())?;
        }
        Command::Media { mountpoint } => {
            let result = agent
                .update_from_media(&mountpoint, InstallOptions::default())
                .map_err(|e| format!("media update refused: {e}"))?;
            eprintln!("keel-agent: media {}: {}", result.outcome, result.message);
            match result.outcome {
                MediaOutcome::Installed => {
                    if let Some(reboot) = &agent.config.reboot_command {
                        eprintln!("keel-agent: rebooting into the new slot ({reboot})");
                        keel_agent::agent::run_health_check(reboot)
                            .map_err(|e| format!("reboot_command: {e}"))?;
                    }
                }
                MediaOutcome::NothingNew => {}
                MediaOutcome::Failed => return Err("media update failed".into()),
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // Like other Unix tools: `keel-agent status | head` ends quietly on a closed pipe.
    // SAFETY: setting a signal disposition to the default before any thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keel-agent: {message}");
            ExitCode::FAILURE
        }
    }
}
