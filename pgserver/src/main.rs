//! The `mako` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use txn::Db;

/// Mako: a distributed, serializable SQL database that speaks the
/// PostgreSQL wire protocol.
#[derive(Parser)]
#[command(name = "mako", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node and serve PostgreSQL clients (psql -h 127.0.0.1 -p 5433).
    ///
    /// All shards of the node run in this process. Data is kept in memory
    /// only in this version: it is lost when the server stops.
    Start {
        /// Address to listen on for PostgreSQL clients.
        #[arg(long, default_value = "127.0.0.1:5433")]
        listen: SocketAddr,
        /// Data directory. Reserved for persistence, which is not
        /// implemented yet: nothing is written there today.
        #[arg(long, default_value = "./mako-data")]
        data_dir: PathBuf,
        /// Number of shards; rows are partitioned by the hash of their
        /// table's first primary-key column.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
        shards: u16,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("MAKO_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Start {
            listen,
            data_dir,
            shards,
        } => start(listen, data_dir, shards as usize),
    }
}

fn start(listen: SocketAddr, data_dir: PathBuf, shards: usize) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mako: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mako: cannot listen on {listen}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        tracing::warn!(
            data_dir = %data_dir.display(),
            "persistence is not implemented yet: all data lives in memory and is lost when the server stops"
        );
        let db = Db::in_process(shards);
        let listen = listener.local_addr().unwrap_or(listen);
        tracing::info!(%listen, shards, "mako is ready for PostgreSQL clients");
        pgserver::server::serve(listener, db, shutdown_signal()).await;
        tracing::info!("mako stopped");
        std::process::ExitCode::SUCCESS
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown signal received");
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
