//! `keel-server --data-dir D --listen 127.0.0.1:8080`: one command, SQLite and local files in D
//! (`--database-url postgres://...` puts the database on PostgreSQL instead, docs/scale-out.md).
#![forbid(unsafe_code)]

use std::io::IsTerminal;

use clap::Parser;

#[tokio::main]
async fn main() {
    // The log goes to stderr (stdout carries the admin token file and the listening address), coloured
    // only on a terminal: no escape codes in a journal or a log file.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = keel_server::Config::parse();
    if let Err(err) = run(config).await {
        eprintln!("keel-server: error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(config: keel_server::Config) -> anyhow::Result<()> {
    if let Some(command) = &config.command {
        return keel_server::admin::run(&config, command).await;
    }
    let data_dir = config.data_dir.clone();
    let server = keel_server::Server::bind(config).await?;
    if server.created_admin_token.is_some() {
        // The token itself would end up in logs and journals: only say where it is.
        println!(
            "created the cross-tenant admin token: {} (mode 0600)",
            data_dir.join("admin.token").display()
        );
    }
    println!("keel-server listening on {}", server.local_addr()?);
    server
        .serve(async {
            let ctrl_c = tokio::signal::ctrl_c();
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        })
        .await
}
