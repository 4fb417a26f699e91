//! The `mako` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use pgserver::handler::ServerLimits;
use tracing_subscriber::EnvFilter;
use txn::Db;

/// mimalloc instead of glibc's allocator: statements allocate and free many
/// small buffers, and glibc's malloc/free took about a fifth of the
/// server's CPU under TPC-C.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// The TPC-C driver, usable against any PostgreSQL-wire server.
    #[command(subcommand)]
    Tpcc(TpccCommand),
    /// Run sqllogictest files against any PostgreSQL-wire server.
    ///
    /// Reads sqllogictest-rs files (`.slt`) and SQLite's original format
    /// (`.test`, or any file with `hash-threshold`), runs every record,
    /// and prints per-file and total pass/fail counts with the failing SQL.
    /// `skipif`/`onlyif` see the label `postgresql` plus any `--label`.
    /// Directories are searched for .slt and .test files.
    Slt {
        /// The server, e.g. postgres://mako@127.0.0.1:5433/mako or
        /// "host=127.0.0.1 port=5433 user=mako".
        #[arg(long)]
        url: String,
        /// Extra labels for skipif/onlyif (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Force a format instead of detecting it per file.
        #[arg(long, value_enum)]
        format: Option<SltFormat>,
        /// How many failures to show per file.
        #[arg(long, default_value_t = 10)]
        max_failures: usize,
        /// Files or directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Start a node and serve PostgreSQL clients (psql -h 127.0.0.1 -p 5433).
    ///
    /// All shards of the node run in this process. Data is kept in memory
    /// and persisted to the data directory (RocksDB): a commit is
    /// acknowledged once its log entry is on disk, and restarting on the
    /// same directory recovers every acknowledged commit.
    ///
    /// With --config and --node, the node is one replica of a replica
    /// group described in a cluster file (TOML; see README): a commit is
    /// acknowledged once a majority of the group's replicas has it on
    /// disk, only the leader serves transactions (the others answer with
    /// SQLSTATE 57P03 naming the leader), and when the leader fails
    /// another replica takes over. A leader that finds itself replaced,
    /// and a replica that fell too far behind and received a snapshot of
    /// the data, restart themselves in place (same command, same process
    /// id) and rejoin as followers; if that fails they exit with status
    /// 75, for a supervisor to start them again.
    Start {
        /// Address to listen on for PostgreSQL clients [default:
        /// 127.0.0.1:5433; with --config, the node's `listen`].
        #[arg(long, conflicts_with = "config")]
        listen: Option<SocketAddr>,
        /// Data directory: created if missing, recovered if it holds data.
        /// A directory that is not Mako's, or is damaged, is refused
        /// [default: ./mako-data; with --config, the node's `data_dir`].
        #[arg(long, conflicts_with = "config")]
        data_dir: Option<PathBuf>,
        /// The cluster configuration file (TOML).
        #[arg(long, requires = "node")]
        config: Option<PathBuf>,
        /// This node's name in the cluster configuration.
        #[arg(long, requires = "config")]
        node: Option<String>,
        /// Number of shards; rows are partitioned by the hash of their
        /// table's first primary-key column. A new data directory defaults
        /// to 1; an existing one keeps the count it was created with.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024), conflicts_with = "config")]
        shards: Option<u16>,
        /// When a commit is acknowledged: `group` (default) after its log
        /// entry is synced to disk, sharing each sync with the commits
        /// queued at the same time; `always` after a sync of its own;
        /// `off` after the entry is written but not synced, which survives
        /// a crash of the server but LOSES the last commits if the machine
        /// crashes or loses power.
        #[arg(long, default_value = "group", conflicts_with = "config")]
        sync: kv::persist::SyncMode,
        /// The most client connections at once; one more is refused with
        /// SQLSTATE 53300 (cancel requests are always read).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max_connections: u32,
        /// The most memory one statement may hold (materialized rows,
        /// joins, sorts, hash tables, results), e.g. 256MB or 2GB; past it
        /// the statement fails with 53200. A session's
        /// `SET mako.statement_memory` may lower it, never raise it.
        #[arg(long, default_value = "1GB", value_parser = parse_memory_arg)]
        statement_memory: usize,
        /// The most memory one transaction's buffered writes may hold
        /// (rows, index entries, keys), e.g. 256MB; a write past it fails
        /// with SQLSTATE 54000. Checked every 1024 rows a statement writes.
        #[arg(long, default_value = "1GB", value_parser = parse_memory_arg)]
        max_write_set: usize,
    },
    /// Start every node of a cluster configuration on this machine, each as
    /// its own `mako start --config F --node N` process logging to
    /// NODE.log, and start again a node that exits with status 75 (it
    /// could not restart itself in place). Ctrl-C stops them all.
    LocalCluster {
        /// The cluster configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Where the nodes' log files go [default: the config file's
        /// directory].
        #[arg(long)]
        log_dir: Option<PathBuf>,
    },
}

/// `mako tpcc ...`
#[derive(Subcommand)]
enum TpccCommand {
    /// Create the TPC-C schema (replacing it) and load the initial
    /// population (TPC-C clause 4.3) for W warehouses, in parallel.
    Load {
        /// The server, e.g. postgres://mako@127.0.0.1:5433/mako.
        #[arg(long)]
        url: String,
        /// Number of warehouses.
        #[arg(long)]
        warehouses: i32,
        /// Parallel loading connections.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// After the load, add the schema's foreign keys (clause 1.3) with
        /// ALTER TABLE, checking the rows loaded; from then on every write
        /// checks its references.
        #[arg(long)]
        foreign_keys: bool,
    },
    /// Run the transaction mix and report tpmC, throughput, latencies and
    /// retries. Each connection is a terminal bound to a home warehouse;
    /// serialization failures (40001) are retried and counted.
    Run {
        /// The server. Give it several times for a Mako cluster of several
        /// replica groups (one URL per group's leader): each terminal then
        /// connects to a node whose group holds its home warehouse (asked
        /// of the servers before the run; nothing else may run then), and
        /// the commit counts of all of them are reported.
        #[arg(long, required = true)]
        url: Vec<String>,
        /// Number of warehouses loaded.
        #[arg(long)]
        warehouses: i32,
        /// Terminals (connections).
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Percentages of New-Order, Payment, Order-Status, Delivery,
        /// Stock-Level.
        #[arg(long, default_value = "45,43,4,4,4")]
        mix: tools::tpcc::run::Mix,
        /// Add the specification's keying and think times (slow: about
        /// one transaction per terminal every 10-30 s).
        #[arg(long)]
        think_time: bool,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// How the SQL is sent: `prepared` (testdata/tpcc's statements
        /// prepared once and executed with parameters) or `literal` (SQL
        /// text with the values written in, simple query protocol, FOR
        /// UPDATE and now(), as many other TPC-C implementations send it).
        #[arg(long, default_value = "prepared")]
        style: tools::tpcc::run::Style,
    },
    /// Check the consistency conditions (clause 3.3.2, 1 to 4).
    Check {
        /// The server.
        #[arg(long)]
        url: String,
        /// Number of warehouses (accepted for symmetry; every warehouse is
        /// checked).
        #[arg(long)]
        warehouses: Option<i32>,
    },
}

/// A sqllogictest file format.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SltFormat {
    /// sqllogictest-rs: server text, one row per line.
    Rs,
    /// SQLite's original: typed values, one per line, hashes.
    Sqlite,
}

/// Leaves openraft's reports of heartbeats that gave way to new entries
/// (one per follower and commit under load; see `repl::raft::Connection`)
/// out of the log.
struct QuietHeartbeats;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for QuietHeartbeats {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        if !event.metadata().target().starts_with("openraft") {
            return true;
        }
        let mut seen = SupersededHeartbeat(false);
        event.record(&mut seen);
        !seen.0
    }
}

/// Whether a field of an event names a superseded heartbeat.
struct SupersededHeartbeat(bool);

impl tracing::field::Visit for SupersededHeartbeat {
    fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0 = self.0 || repl::raft::is_superseded_heartbeat(&format!("{value:?}"));
    }
}

fn main() -> std::process::ExitCode {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::fmt()
        .with_env_filter(
            // openraft narrates every vote and append at info.
            EnvFilter::try_from_env("MAKO_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .finish()
        .with(QuietHeartbeats)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Start {
            config: Some(config),
            node: Some(node),
            max_connections,
            statement_memory,
            max_write_set,
            ..
        } => start_replica(
            &config,
            &node,
            ServerLimits {
                statement_memory,
                max_connections: max_connections as usize,
                max_write_set,
            },
        ),
        Command::Start {
            listen,
            data_dir,
            shards,
            sync,
            max_connections,
            statement_memory,
            max_write_set,
            ..
        } => start(
            listen.unwrap_or_else(|| ([127, 0, 0, 1], 5433).into()),
            data_dir.unwrap_or_else(|| PathBuf::from("./mako-data")),
            shards.map(usize::from),
            sync,
            ServerLimits {
                statement_memory,
                max_connections: max_connections as usize,
                max_write_set,
            },
        ),
        Command::LocalCluster { config, log_dir } => {
            pgserver::local_cluster::run(&config, log_dir.as_deref())
        }
        Command::Tpcc(cmd) => tpcc(cmd),
        Command::Slt {
            url,
            labels,
            format,
            max_failures,
            files,
        } => slt(&url, &labels, format, max_failures, &files),
    }
}

fn parse_memory_arg(s: &str) -> Result<usize, String> {
    match sql::session::parse_memory(s) {
        Some(0) | None => Err(format!(
            "expected a positive size such as 512MB or 2GB, not \"{s}\""
        )),
        Some(n) => Ok(n),
    }
}

fn start(
    listen: SocketAddr,
    data_dir: PathBuf,
    shards: Option<usize>,
    sync: kv::persist::SyncMode,
    limits: ServerLimits,
) -> std::process::ExitCode {
    let opts = kv::persist::Options {
        sync,
        shards,
        ..kv::persist::Options::default()
    };
    let (log, stores, recovered) = match kv::persist::open(&data_dir, opts) {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("mako: {}", e.message);
            return std::process::ExitCode::FAILURE;
        }
    };
    let shards = stores.len();
    let db = Db::logged(stores, log.clone(), recovered.last_txn);
    if recovered.created {
        tracing::info!(data_dir = %data_dir.display(), shards, "created a new data directory");
    } else {
        let tables = pgserver::server::count_tables(&db);
        tracing::info!(
            data_dir = %data_dir.display(),
            shards,
            tables,
            rows = recovered.records,
            bytes = recovered.bytes,
            log_entries_replayed = recovered.log_entries,
            log_entries_dropped = recovered.log_entries_dropped,
            last_transaction = recovered.last_txn,
            seconds = recovered.elapsed.as_secs_f64(),
            "recovered"
        );
    }
    if sync == kv::persist::SyncMode::Off {
        tracing::warn!(
            "--sync off: commits are acknowledged before they reach the disk; \
             a machine crash or power loss loses the last ones"
        );
    }
    let Some(runtime) = server_runtime(&limits) else {
        return std::process::ExitCode::FAILURE;
    };
    let code = runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mako: cannot listen on {listen}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let listen = listener.local_addr().unwrap_or(listen);
        tracing::info!(%listen, shards, sync = sync.name(), "mako is ready for PostgreSQL clients");
        pgserver::server::serve(listener, db, limits, shutdown_signal()).await;
        std::process::ExitCode::SUCCESS
    });
    drop(runtime);
    // Everything acknowledged is durable already; this writes a final
    // checkpoint so that the next start replays less.
    log.close();
    tracing::info!("mako stopped");
    code
}

/// The stack of every server thread. Statements run on the blocking pool's
/// threads and recurse on the shape of the SQL (binding, planning,
/// evaluating): deep expressions and long chains need a deep stack, and
/// what they may use is guarded (`sql::interrupt::check_stack`, 54001).
/// Only the pages a thread touches take memory.
const THREAD_STACK: usize = 64 << 20;

/// The server's runtime. The async workers (one per core) only move bytes
/// and wait (for commits to be durable, for clients); statements run on
/// its blocking pool, one thread per running statement, at most one per
/// allowed connection and a few more.
fn server_runtime(limits: &ServerLimits) -> Option<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.max(2))
        .max_blocking_threads(limits.max_connections + 16)
        .thread_stack_size(THREAD_STACK)
        .thread_name("mako-server")
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("mako: cannot start the async runtime: {e}");
            None
        }
    }
}

/// `mako start --config F --node N`: one replica of a replica group.
/// Replaces this process with a fresh start of the same command (same
/// arguments, same process id): a replica that was deposed, or that
/// stored a snapshot to install, recovers from its data directory and
/// rejoins. Nothing is lost by not stopping first: what the node must keep
/// is durable, and the rest is what a crash would lose. If that fails, the
/// process exits with status 75 for a supervisor (`mako local-cluster`)
/// to restart it.
fn restart_in_place() -> ! {
    use std::os::unix::process::CommandExt;
    tracing::warn!("restarting this node in place");
    match std::env::current_exe() {
        Ok(exe) => {
            let e = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .exec();
            eprintln!("mako: cannot restart in place ({e}); exiting for a supervisor to restart");
        }
        Err(e) => eprintln!("mako: cannot find this program to restart it ({e})"),
    }
    std::process::exit(node::DEPOSED_EXIT)
}

fn start_replica(
    config: &std::path::Path,
    name: &str,
    limits: ServerLimits,
) -> std::process::ExitCode {
    use node::config::ClusterConfig;
    let fail = |msg: String| {
        eprintln!("mako: {msg}");
        std::process::ExitCode::FAILURE
    };
    let cfg = match ClusterConfig::load(config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let key = match cfg.load_key() {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let on_deposed = Box::new(|why| match why {
        node::Stop::Deposed | node::Stop::Reload => restart_in_place(),
        node::Stop::Failed => std::process::exit(1),
    });
    let opts = match node::NodeOptions::from_config(&cfg, name, on_deposed) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let me = cfg.node(name).expect("checked by NodeOptions").clone();
    let data_dir = opts.data_dir.clone();
    let mut node = match node::Node::open(opts) {
        Ok(n) => n,
        Err(e) => return fail(e.message),
    };
    tracing::info!(
        node = name,
        data_dir = %data_dir.display(),
        rows = node.recovered.records,
        applied_slot = node.recovered.applied_slot,
        seconds = node.recovered.elapsed.as_secs_f64(),
        "recovered"
    );
    let Some(runtime) = server_runtime(&limits) else {
        return std::process::ExitCode::FAILURE;
    };
    // Replication gets a runtime of its own: a session may block a server
    // worker (see `server_runtime`), and a transport task queued behind it
    // would wait for it, while that session's commit waits for the
    // transport. One worker:
    // Paxos streams run on threads of their own, so only the transport's
    // reads (and the writes senders leave to it) run here, and openraft's
    // tasks sync their log on blocking threads; a second worker costs a
    // wake-up per message (tokio wakes an idle worker to share new work).
    let repl_runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("mako-repl")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the replication runtime: {e}")),
    };
    let peers = node::peers(&cfg, name);
    let id = cfg.node_id(name).expect("checked");
    let transport = match repl_runtime.block_on(repl::net::Tcp::start(
        id,
        me.repl,
        peers,
        key,
        node.deliver(),
    )) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot listen for replicas on {}: {e}", me.repl)),
    };
    if let Err(e) = node.start(std::sync::Arc::new(transport), repl_runtime.handle()) {
        return fail(e.message);
    }
    let code = runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(me.listen).await {
            Ok(l) => l,
            Err(e) => return fail(format!("cannot listen on {}: {e}", me.listen)),
        };
        tracing::info!(
            node = name,
            listen = %me.listen,
            repl = %me.repl,
            "mako replica is up; it serves PostgreSQL clients once it leads"
        );
        pgserver::server::serve(listener, node.db.clone(), limits, shutdown_signal()).await;
        std::process::ExitCode::SUCCESS
    });
    drop(runtime);
    node.close();
    drop(repl_runtime);
    tracing::info!("mako stopped");
    code
}

fn tpcc(cmd: TpccCommand) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mako: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cmd {
            TpccCommand::Load {
                url,
                warehouses,
                connections,
                foreign_keys,
            } => tools::tpcc::load::load(&url, warehouses, connections, foreign_keys).await,
            TpccCommand::Run {
                url,
                warehouses,
                connections,
                duration,
                mix,
                think_time,
                json,
                style,
            } => {
                let opts = tools::tpcc::run::RunOptions {
                    urls: url,
                    warehouses,
                    connections,
                    duration: std::time::Duration::from_secs(duration),
                    mix,
                    think_time,
                    json,
                    style,
                };
                let report = tools::tpcc::run::run(opts).await?;
                if report.errors > 0 {
                    return Err(format!("{} transactions failed with errors", report.errors));
                }
                Ok(())
            }
            TpccCommand::Check { url, .. } => {
                let outcomes = tools::tpcc::check::check(&url).await?;
                if tools::tpcc::check::print(&outcomes) {
                    Ok(())
                } else {
                    Err("consistency check failed".into())
                }
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mako tpcc: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn collect_files(path: &std::path::Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for p in entries {
            if p.is_dir() || p.extension().is_some_and(|e| e == "slt" || e == "test") {
                collect_files(&p, out)?;
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn slt(
    url: &str,
    labels: &[String],
    format: Option<SltFormat>,
    max_failures: usize,
    paths: &[PathBuf],
) -> std::process::ExitCode {
    let mut files = Vec::new();
    for p in paths {
        if let Err(e) = collect_files(p, &mut files) {
            eprintln!("mako slt: {}: {e}", p.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    let format = format.map(|f| match f {
        SltFormat::Rs => tools::slt::Format::Rs,
        SltFormat::Sqlite => tools::slt::Format::Sqlite,
    });
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mako: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (mut passed, mut failed, mut skipped, mut bad_files) = (0, 0, 0, 0);
    for file in &files {
        let name = file.display().to_string();
        match runtime.block_on(tools::slt::run_file(file, url, &labels, format)) {
            Ok(report) => {
                tools::slt::print_report(&name, &report, max_failures);
                passed += report.passed;
                failed += report.failed;
                skipped += report.skipped;
                if report.failed > 0 {
                    bad_files += 1;
                }
            }
            Err(e) => {
                println!("FAIL {name}: {e}");
                bad_files += 1;
            }
        }
    }
    println!(
        "total: {} files ({} with failures), {passed} records passed, {failed} failed, {skipped} skipped",
        files.len(),
        bad_files
    );
    if bad_files == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
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
