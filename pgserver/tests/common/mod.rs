//! A real `mako` server process for the end-to-end tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `mako start` child process on a free port; killed when dropped.
pub struct Mako {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Mako {
    /// Starts a server with `shards` shards on 127.0.0.1, port chosen by
    /// the system, and waits until it reports its address.
    pub fn start(shards: u16) -> Mako {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mako"))
            .args([
                "start",
                "--listen",
                "127.0.0.1:0",
                "--shards",
                &shards.to_string(),
            ])
            .env("MAKO_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn mako");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
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
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("mako did not report its address");
        Mako { child, port }
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
    }
}
