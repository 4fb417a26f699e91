//! A real `mako` server process for the end-to-end tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `mako start` child process on a free port, with its own temporary
/// data directory; killed (and the directory removed) when dropped.
pub struct Mako {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    dir: PathBuf,
    shards: u16,
    env: Vec<(String, String)>,
    /// Extra `mako start` arguments (kept for restarts).
    args: Vec<String>,
    /// Everything the server printed on stderr so far.
    log: Arc<Mutex<Vec<String>>>,
}

/// A data directory path no one uses.
pub fn temp_data_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mako-test-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A started server: the child, its port and the lines it has logged.
pub type Spawned = (Child, u16, Arc<Mutex<Vec<String>>>);

/// Starts `mako start` on `dir`; returns the child, its port and its log,
/// or what it printed if it exited instead of becoming ready.
#[allow(dead_code)]
pub fn spawn(dir: &Path, shards: u16, extra: &[&str]) -> Result<Spawned, String> {
    spawn_with_env(dir, shards, extra, &[])
}

/// [`spawn`] with extra environment variables.
pub fn spawn_with_env(
    dir: &Path,
    shards: u16,
    extra: &[&str],
    env: &[(String, String)],
) -> Result<Spawned, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mako"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args([
            "start",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            &shards.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env("MAKO_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn mako");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listen=").nth(1) {
                    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                    let addr =
                        addr.trim_matches(|c: char| !c.is_ascii_digit() && c != '.' && c != ':');
                    if let Some(port) = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok())
                    {
                        let _ = tx.send(port);
                    }
                }
                log.lock().unwrap().push(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(port) = rx.recv_timeout(Duration::from_millis(50)) {
            return Ok((child, port, log));
        }
        if let Some(status) = child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(100)); // let the reader finish
            let printed = log.lock().unwrap().join("\n");
            return Err(format!("mako exited with {status}:\n{printed}"));
        }
        assert!(Instant::now() < deadline, "mako did not report its address");
    }
}

impl Mako {
    /// Starts a server with `shards` shards on 127.0.0.1, port chosen by
    /// the system, on a new temporary data directory, and waits until it
    /// reports its address.
    #[allow(dead_code)]
    pub fn start(shards: u16) -> Mako {
        Self::start_with_env(shards, &[])
    }

    /// [`Mako::start`] with extra environment variables (kept for
    /// restarts).
    pub fn start_with_env(shards: u16, env: &[(&str, &str)]) -> Mako {
        Self::start_in(temp_data_dir("server"), shards, env)
    }

    /// [`Mako::start_with_env`] on the data directory `dir` (removed when
    /// the server is dropped).
    pub fn start_in(dir: PathBuf, shards: u16, env: &[(&str, &str)]) -> Mako {
        Self::start_full(dir, shards, env, &[])
    }

    /// [`Mako::start`] with extra `mako start` arguments (kept for
    /// restarts).
    #[allow(dead_code)]
    pub fn start_with_args(shards: u16, args: &[&str]) -> Mako {
        Self::start_full(temp_data_dir("server"), shards, &[], args)
    }

    fn start_full(dir: PathBuf, shards: u16, env: &[(&str, &str)], args: &[&str]) -> Mako {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, port, log) =
            spawn_with_env(&dir, shards, args, &env).unwrap_or_else(|e| panic!("{e}"));
        Mako {
            child,
            port,
            dir,
            shards,
            env,
            args: args.iter().map(|a| a.to_string()).collect(),
            log,
        }
    }

    /// The server's process id.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server process is still running.
    #[allow(dead_code)]
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Starts the server again on the same data directory, first killing
    /// it with SIGKILL (a crash: no shutdown of any kind) if it is still
    /// running.
    #[allow(dead_code)]
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let (child, port, log) = spawn_with_env(&self.dir, self.shards, &args, &self.env)
            .unwrap_or_else(|e| panic!("{e}"));
        self.child = child;
        self.port = port;
        self.log = log;
    }

    /// Kills the server with SIGKILL (a crash) and waits for it to end.
    #[allow(dead_code)]
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts `mako start` on `dir` once more (with this server's
    /// arguments): the new server, or what the refused start printed. The
    /// caller removes `dir` if it is not this server's own.
    #[allow(dead_code)]
    pub fn start_on(&self, dir: &Path) -> Result<Spawned, String> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        spawn_with_env(dir, self.shards, &args, &self.env)
    }

    /// The data directory.
    #[allow(dead_code)]
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// What the server printed on stderr so far.
    #[allow(dead_code)]
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// A connection string for tokio-postgres and `mako` subcommands.
    #[allow(dead_code)] // not every test binary uses every helper
    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=mako dbname=mako", self.port)
    }

    /// Runs `script` with psql (simple protocol); stdout then stderr.
    #[allow(dead_code)]
    pub fn psql(&self, script: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "mako",
                "-d",
                "mako",
            ])
            .args(["-v", "ON_ERROR_STOP=0", "-A", "-t", "-c", script])
            .output()
            .expect("psql is not installed (run .ci/run, or set MAKO_SKIP_PSQL=1)");
        let mut s = String::from_utf8_lossy(&out.stdout).to_string();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        s
    }

    /// Stops the server with SIGTERM and returns its exit status.
    #[allow(dead_code)]
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "mako did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mako {
    fn drop(&mut self) {
        // A failed test must not leave the server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One bank transfer with its event row (tables `accounts` and `events`);
/// Ok when COMMIT was acknowledged.
#[allow(dead_code)] // not every test binary uses every helper
pub async fn transfer(
    c: &tokio_postgres::Client,
    id: i64,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<(), String> {
    let run = async {
        c.batch_execute("BEGIN").await?;
        c.execute(
            "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
            &[&amount, &from],
        )
        .await?;
        c.execute(
            "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
            &[&amount, &to],
        )
        .await?;
        c.execute(
            "INSERT INTO events VALUES ($1, $2, $3, $4)",
            &[&id, &from, &to, &amount],
        )
        .await?;
        c.batch_execute("COMMIT").await
    };
    match run.await {
        Ok(()) => Ok(()),
        Err(e) => {
            // A conflict rolls back; a dead server fails the rollback too.
            let _ = c.batch_execute("ROLLBACK").await;
            Err(match e.as_db_error() {
                Some(db) => format!("{}: {}", db.code().code(), db.message()),
                None => e.to_string(),
            })
        }
    }
}

/// Every row of every shard of a stopped replica's data directory (see
/// `node::replica_rows`).
#[allow(dead_code)] // not every test binary uses every helper
pub fn dump(dir: &Path, group: &str, streams: usize) -> Vec<node::ShardRow> {
    node::replica_rows(dir, group, streams).expect("open a replica's directory")
}

/// A tokio-postgres client of the server on 127.0.0.1:`port` (its
/// connection runs as a task of the current runtime).
#[allow(dead_code)]
pub async fn connect(port: u16) -> tokio_postgres::Client {
    let url = format!("host=127.0.0.1 port={port} user=mako dbname=mako");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

/// A small deterministic generator (xorshift64*) for seeded tests.
#[allow(dead_code)]
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// A process's peak resident memory (VmHWM), in KiB.
#[allow(dead_code)]
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}
