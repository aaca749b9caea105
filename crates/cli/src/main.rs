//! `keel`: the command line over bundles, deltas, TUF metadata and the fleet server's management API.
//!
//! Each command family lives in its own module with a clap `Command` enum and a `run` function.

mod bundle;
mod delta;
mod fleet;
mod image;
mod tuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about = "Fail-safe OTA updates: bundles, deltas, TUF and fleet management"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, verify and inspect SWUpdate-compatible .swu bundles.
    #[command(subcommand)]
    Bundle(bundle::Command),
    /// Create, apply and inspect delta payloads between two images.
    #[command(subcommand)]
    Delta(delta::Command),
    /// Work on filesystem images at build time (dm-verity hash trees).
    #[command(subcommand)]
    Image(image::Command),
    /// Offline TUF repository tasks (root creation, key rotation) and a conformance client.
    #[command(subcommand)]
    Tuf(tuf::Command),
    /// Fleet management against keel-server (upload, assign, rollouts).
    #[command(flatten)]
    Fleet(fleet::Command),
    /// Print the shell completion script for SHELL (bash, zsh, fish, ...).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
}

fn main() {
    // Like other Unix filters, end quietly when the reader of our output goes away
    // (`keel ... | head`) instead of failing on a broken pipe.
    // SAFETY: called first in main, before any thread exists; SIG_DFL is a valid disposition.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bundle(c) => bundle::run(c),
        Command::Delta(c) => delta::run(c),
        Command::Image(c) => image::run(c),
        Command::Tuf(c) => tuf::run(c),
        Command::Fleet(c) => fleet::run(c),
        Command::Completions { shell } => {
            let mut cli = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli, "keel", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script).map_err(anyhow::Error::from)
        }
    };
    if let Err(err) = result {
        eprintln!("keel: error: {}", error_message(&err));
        std::process::exit(1);
    }
}

/// The error and its causes joined by ": ", like anyhow's `{:#}`, but without a cause whose text
/// the message already ends with (errors that print their source, e.g. `{path}: {source}`, would
/// otherwise say it twice: `x.img: No such file or directory (os error 2): No such file …`).
fn error_message(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if message.is_empty() {
            message = text;
        } else if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_message_says_each_cause_once() {
        #[derive(Debug)]
        struct PathError {
            path: String,
            source: std::io::Error,
        }
        impl std::fmt::Display for PathError {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}: {}", self.path, self.source)
            }
        }
        impl std::error::Error for PathError {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        let err = anyhow::Error::new(PathError {
            path: "missing.img".into(),
            source: io,
        })
        .context("reading the manifest's images");
        assert_eq!(
            super::error_message(&err),
            format!("reading the manifest's images: missing.img: {text}")
        );
    }
}
