//! `mako local-cluster`: every node of a cluster configuration as its own
//! process on this machine, for tests and demos.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use node::DEPOSED_EXIT;
use node::config::ClusterConfig;

/// How long the nodes get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Set by SIGINT/SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Member {
    name: String,
    log: PathBuf,
    child: Option<Child>,
    /// When to start it again after it exited.
    restart_at: Option<Instant>,
}

/// Starts every node, supervises them until Ctrl-C, then stops them.
pub fn run(config: &Path, log_dir: Option<&Path>) -> ExitCode {
    let cfg = match ClusterConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mako: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cfg.create_secret_if_missing() {
        Ok(true) => println!(
            "mako local-cluster: created the cluster secret {}",
            cfg.secret_path().display()
        ),
        Ok(false) => {}
        Err(e) => {
            eprintln!("mako: {e}");
            return ExitCode::FAILURE;
        }
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mako: cannot find the mako executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_dir = log_dir.map_or_else(|| cfg.base.clone(), Path::to_path_buf);
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        eprintln!("mako: cannot create {}: {e}", log_dir.display());
        return ExitCode::FAILURE;
    }
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut members: Vec<Member> = cfg
        .groups
        .iter()
        .flat_map(|g| g.members())
        .map(|name| Member {
            name: name.clone(),
            log: log_dir.join(format!("{name}.log")),
            child: None,
            restart_at: Some(Instant::now()),
        })
        .collect();
    let spawn = |m: &Member| -> std::io::Result<Child> {
        let log = File::options().create(true).append(true).open(&m.log)?;
        Command::new(&exe)
            .args(["start", "--config"])
            .arg(config)
            .args(["--node", &m.name])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
    };
    let names: Vec<&str> = cfg.groups.iter().map(|g| g.name.as_str()).collect();
    println!(
        "mako local-cluster: {} ({} shards)",
        if names.len() == 1 {
            format!("group {}", names[0])
        } else {
            format!("groups {}", names.join(", "))
        },
        cfg.shard_count()
    );
    for m in &members {
        let node = cfg.node(&m.name).expect("checked");
        let group = cfg.group_of(&m.name).expect("a member");
        println!(
            "  {:<8} group={:<6} dc={:<8} psql -h {} -p {}   log: {}",
            m.name,
            group.name,
            node.dc,
            node.listen.ip(),
            node.listen.port(),
            m.log.display()
        );
    }
    println!("Ctrl-C stops every node.");
    let failed = Arc::new(AtomicBool::new(false));
    while !STOP.load(Ordering::SeqCst) {
        for m in &mut members {
            if let Some(child) = &mut m.child
                && let Ok(Some(status)) = child.try_wait()
            {
                m.child = None;
                if status.code() == Some(DEPOSED_EXIT) {
                    println!("{} was replaced as leader; restarting it", m.name);
                    m.restart_at = Some(Instant::now() + Duration::from_millis(200));
                } else {
                    println!(
                        "{} exited ({status}); see {} (not restarted)",
                        m.name,
                        m.log.display()
                    );
                    failed.store(true, Ordering::SeqCst);
                }
            }
            if m.child.is_none() && m.restart_at.is_some_and(|t| Instant::now() >= t) {
                m.restart_at = None;
                match spawn(m) {
                    Ok(c) => m.child = Some(c),
                    Err(e) => {
                        println!("cannot start {}: {e}", m.name);
                        failed.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("stopping every node");
    for m in &mut members {
        if let Some(c) = &m.child {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    // A node writes a final checkpoint as it stops; one that has not
    // stopped after this long is killed.
    let deadline = Instant::now() + STOP_GRACE;
    for m in &mut members {
        if let Some(c) = &mut m.child {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        println!("{} did not stop within {STOP_GRACE:?}; killing it", m.name);
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
    if failed.load(Ordering::SeqCst) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
