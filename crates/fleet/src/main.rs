//! `keel-fleet`: many simulated hawkBit DDI devices in one process, against one or several
//! keel-server replicas (crate docs of `keel_fleet`; docs/scale-out.md, docs/benchmarks.md).
//!
//! ```text
//! keel-fleet register-sql --devices 100000 --tag fleet | sqlite3 DATA/keel.db   (or | psql URL)
//! keel-fleet run --server http://a:8080 --server http://b:8080 --devices 100000 --interval 30
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use keel_fleet::{registration_sql, Auth, FleetConfig};

const USAGE: &str = "\
usage: keel-fleet run --server URL [--server URL ...] --devices N [--first N] [--prefix P]
                      [--tenant T] [--token-seed S | --gateway-token T] [--interval SECS]
                      [--jitter FRACTION] [--download none|head|range:BYTES|full]
                      [--failure-ratio R] [--steps N] [--max-in-flight N] [--duration SECS]
                      [--until-closed N] [--seed N]
       keel-fleet register-sql --devices N [--first N] [--prefix P] [--tenant T]
                      [--token-seed S] [--tag TAG]

run: prints a JSON report (polls/s, latency percentiles per request kind, closed actions) when
     --duration passes, --until-closed actions were closed, or on SIGINT/SIGTERM.
register-sql: prints SQL for sqlite3 or psql that registers the devices with their derived
     TargetTokens (the same --prefix/--token-seed as for run).";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keel-fleet: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: not a valid number: {value:?}"))
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    let secs: f64 = number(flag, value)?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{flag}: must be above 0"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut args = args.into_iter();
    let command = args.next().ok_or(USAGE)?;
    let mut config = FleetConfig {
        servers: Vec::new(),
        ..FleetConfig::default()
    };
    let mut seed_text = "keel-fleet".to_string();
    let mut gateway = None;
    let mut tag = String::new();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            return Ok(());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--server" => config.servers.push(value),
            "--devices" => config.devices = number(&flag, &value)?,
            "--first" => config.first = number(&flag, &value)?,
            "--prefix" => config.prefix = value,
            "--tenant" => config.tenant = value,
            "--token-seed" => seed_text = value,
            "--gateway-token" => gateway = Some(value),
            "--tag" => tag = value,
            "--interval" => config.interval = Some(seconds(&flag, &value)?),
            "--jitter" => config.jitter = number(&flag, &value)?,
            "--download" => config.download = value.parse()?,
            "--failure-ratio" => config.failure_ratio = number(&flag, &value)?,
            "--steps" => config.progress_steps = number(&flag, &value)?,
            "--max-in-flight" => config.max_in_flight = number(&flag, &value)?,
            "--duration" => config.duration = Some(seconds(&flag, &value)?),
            "--until-closed" => config.until_closed = Some(number(&flag, &value)?),
            "--seed" => config.seed = number(&flag, &value)?,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    match command.as_str() {
        "register-sql" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            print!(
                "{}",
                registration_sql(
                    &config.tenant,
                    &config.prefix,
                    config.first,
                    config.devices,
                    &seed_text,
                    &tag,
                    now
                )
            );
            Ok(())
        }
        "run" => {
            config.auth = match gateway {
                Some(token) => Auth::Gateway(token),
                None => Auth::TargetTokens { seed: seed_text },
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("tokio runtime: {e}"))?;
            let report = runtime.block_on(async {
                let (stop_tx, stop) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .ok();
                    let term = async {
                        match term.as_mut() {
                            Some(term) => {
                                term.recv().await;
                            }
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term => {}
                    }
                    let _ = stop_tx.send(true);
                });
                keel_fleet::run(config, stop).await
            })?;
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| format!("writing the report: {e}"))?;
            println!("{text}");
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}
