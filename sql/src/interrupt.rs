//! Stopping a statement that runs: cancel requests, `statement_timeout`,
//! server shutdown; and the stack-depth guard of recursive code.
//!
//! A statement runs on a thread of its own (the server's blocking pool),
//! so nothing can stop it from outside: instead, every loop that may run
//! long (scans, joins, sorts, aggregates, writes of many rows) calls
//! [`Interrupt::check`] now and then, and returns the error it gives. The
//! flag is one atomic load; the deadline costs a clock read, which is why
//! loops check once per batch or per few thousand rows, not per row.
//!
//! A commit that has been installed is never cut short: its outcome is
//! decided, and a client told "canceled" would retry a transaction that
//! committed (see `pgserver`'s durability wait).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kv::{Error, ErrorKind, Result};

/// Why a statement must stop (the `reason` byte).
const NONE: u8 = 0;
const CANCELED: u8 = 1;
const SHUTDOWN: u8 = 2;

/// No deadline.
const NO_DEADLINE: u64 = u64::MAX;

/// The instant deadlines are counted from (nanoseconds after it), so that
/// an [`Interrupt`] is plain atomics and can be a `static`.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_nanos() -> u64 {
    u64::try_from(origin().elapsed().as_nanos()).unwrap_or(NO_DEADLINE - 1)
}

/// One session's stop signal, shared between the thread that runs its
/// statements and whoever may stop them (a cancel request on another
/// connection, the server's shutdown).
#[derive(Debug)]
pub struct Interrupt {
    /// Why the running query must stop (`NONE`, `CANCELED`, `SHUTDOWN`).
    reason: AtomicU8,
    /// When the running statement times out, in nanoseconds after
    /// [`origin`]; `NO_DEADLINE` when it has no timeout.
    deadline: AtomicU64,
    /// True while a query message is being processed: a cancel request
    /// that arrives when nothing runs is ignored, as in PostgreSQL.
    running: AtomicBool,
    /// Set once the server shuts down: every later check fails too.
    shutdown: AtomicBool,
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt::new()
    }
}

/// An interrupt nothing ever triggers, for callers without a session.
pub static NEVER: Interrupt = Interrupt::new();

impl Interrupt {
    /// A signal that has not fired.
    pub const fn new() -> Self {
        Interrupt {
            reason: AtomicU8::new(NONE),
            deadline: AtomicU64::new(NO_DEADLINE),
            running: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
        }
    }

    /// A query message starts: earlier cancels no longer apply.
    pub fn start_query(&self) {
        if !self.shutdown.load(Ordering::Acquire) {
            self.reason.store(NONE, Ordering::Release);
        }
        self.running.store(true, Ordering::Release);
    }

    /// The query message is done; a cancel from now on is ignored.
    pub fn finish_query(&self) {
        self.running.store(false, Ordering::Release);
        self.deadline.store(NO_DEADLINE, Ordering::Release);
        if !self.shutdown.load(Ordering::Acquire) {
            self.reason.store(NONE, Ordering::Release);
        }
    }

    /// A statement starts, with `statement_timeout` (`None`: no limit).
    pub fn start_statement(&self, timeout: Option<Duration>) {
        let deadline = timeout.map_or(NO_DEADLINE, |t| {
            now_nanos().saturating_add(u64::try_from(t.as_nanos()).unwrap_or(NO_DEADLINE))
        });
        self.deadline.store(deadline, Ordering::Release);
    }

    /// Asks the running query, if any, to stop (a CancelRequest). Returns
    /// whether one was running.
    pub fn cancel(&self) -> bool {
        if self.running.load(Ordering::Acquire) {
            let _ =
                self.reason
                    .compare_exchange(NONE, CANCELED, Ordering::AcqRel, Ordering::Acquire);
            true
        } else {
            false
        }
    }

    /// The server is going down: the running statement and every later one
    /// stop with 57P01.
    pub fn shut_down(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.reason.store(SHUTDOWN, Ordering::Release);
    }

    /// Whether the server has asked this session to end.
    pub fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Fails with the reason the statement must stop, if any.
    pub fn check(&self) -> Result<()> {
        match self.reason.load(Ordering::Acquire) {
            NONE => {}
            CANCELED => {
                return Err(Error::new(
                    ErrorKind::QueryCanceled,
                    "canceling statement due to user request",
                ));
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::AdminShutdown,
                    "terminating connection due to administrator command",
                ));
            }
        }
        let deadline = self.deadline.load(Ordering::Acquire);
        if deadline != NO_DEADLINE && now_nanos() >= deadline {
            return Err(Error::new(
                ErrorKind::QueryCanceled,
                "canceling statement due to statement timeout",
            ));
        }
        Ok(())
    }
}

/// The stack a statement may leave unused: below it, recursive code
/// (binding, planning, evaluating deep expressions, expanding views)
/// refuses to go deeper. It is large because what runs after the guard
/// fires (unwinding, dropping a deep syntax tree, formatting the error)
/// needs stack too.
const STACK_RED_ZONE: usize = 1 << 20;

/// Fails with 54001 when the thread's stack is nearly used up, as
/// PostgreSQL's `check_stack_depth` does. Call it at the top of every
/// function that recurses on the shape of a statement.
pub fn check_stack() -> Result<()> {
    match stacker::remaining_stack() {
        Some(left) if left < STACK_RED_ZONE => Err(Error::new(
            ErrorKind::StackDepth,
            "stack depth limit exceeded (the statement nests too deeply: \
             simplify it, or split long chains of operators, lists or UNIONs)",
        )),
        _ => Ok(()),
    }
}

/// Runs `f`, on a new stack segment if this one is nearly used up: for
/// recursive code that cannot fail (walks over an expression already
/// bound, rendering it), where [`check_stack`] could not report. Such code
/// runs on trees the guarded code accepted, so it rarely needs it.
pub fn grow<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(STACK_RED_ZONE / 2, 16 << 20, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_stops_only_a_running_query() {
        let i = Interrupt::new();
        assert!(!i.cancel(), "nothing runs: ignored");
        i.start_query();
        assert!(i.check().is_ok(), "the early cancel does not apply");
        assert!(i.cancel());
        assert_eq!(i.check().unwrap_err().kind, ErrorKind::QueryCanceled);
        i.finish_query();
        i.start_query();
        assert!(i.check().is_ok());
    }

    #[test]
    fn a_statement_times_out_after_its_deadline() {
        let i = Interrupt::new();
        i.start_query();
        i.start_statement(Some(Duration::from_millis(20)));
        assert!(i.check().is_ok());
        std::thread::sleep(Duration::from_millis(30));
        let e = i.check().unwrap_err();
        assert_eq!(e.kind, ErrorKind::QueryCanceled);
        assert!(e.message.contains("statement timeout"), "{e}");
        i.start_statement(None);
        assert!(i.check().is_ok(), "the next statement has its own deadline");
    }

    #[test]
    fn shutdown_is_sticky() {
        let i = Interrupt::new();
        i.shut_down();
        i.start_query();
        assert_eq!(i.check().unwrap_err().kind, ErrorKind::AdminShutdown);
        i.finish_query();
        assert!(i.is_shut_down());
    }

    #[test]
    fn recursion_that_cannot_fail_grows_the_stack() {
        fn depth(n: usize) -> usize {
            if n == 0 {
                return 0;
            }
            grow(|| {
                let pad = std::hint::black_box([1u8; 512]);
                depth(n - 1) + pad[n % 512] as usize
            })
        }
        // About 60 MB of frames on a 4 MB stack.
        let sum = std::thread::Builder::new()
            .stack_size(4 << 20)
            .spawn(|| depth(100_000))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(sum, 100_000);
    }

    #[test]
    fn deep_recursion_stops_at_the_guard() {
        fn depth(n: usize) -> Result<usize> {
            check_stack()?;
            let pad = std::hint::black_box([0u8; 512]);
            Ok(depth(n + 1)? + pad[n % 512] as usize)
        }
        let e = std::thread::Builder::new()
            .stack_size(4 << 20)
            .spawn(|| depth(0))
            .unwrap()
            .join()
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::StackDepth);
    }
}
