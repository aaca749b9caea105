//! `keel`: the command line over bundles, deltas, TUF metadata and the fleet server's management API.
//!
//! Each command family lives in its own module with a clap `Command` enum and a `run` function.

mod bundle;
mod delta;
mod fleet;
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
    /// Offline TUF repository tasks (root creation, key rotation) and a conformance client.
    #[command(subcommand)]
    Tuf(tuf::Command),
    /// Fleet management against keel-server (upload, assign, rollouts).
    #[command(flatten)]
    Fleet(fleet::Command),
}

fn main() {
    // Like other Unix filters, end quietly when the reader of our output goes away
    // (`keel ... | head`) instead of failing on a broken pipe.
    // SAFETY: called first in main, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bundle(c) => bundle::run(c),
        Command::Delta(c) => delta::run(c),
        Command::Tuf(c) => tuf::run(c),
        Command::Fleet(c) => fleet::run(c),
    };
    if let Err(err) = result {
        eprintln!("keel: error: {err:#}");
        std::process::exit(1);
    }
}
