//! The server's sessions, as far as anyone outside a connection needs
//! them: a CancelRequest names one by process id and secret key, and a
//! shutdown stops them all.
//!
//! Each connection registers when it is accepted and gets a process id
//! (the BackendKeyData pid) and, at startup, a random secret key: 4 bytes
//! for protocol 3.0 clients (all PostgreSQL 15 clients), 32 bytes for
//! 3.2. A cancel request must name both; a wrong key is ignored, as in
//! PostgreSQL, so one client cannot cancel another's statements by
//! counting pids. The registration ends when the connection does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use sql::interrupt::Interrupt;

/// One registered session.
struct Entry {
    /// The secret a cancel request must present; `None` until startup.
    secret: Option<SecretKey>,
    /// Stops the session's running statement.
    interrupt: Arc<Interrupt>,
}

/// Every live session of a server.
#[derive(Default)]
pub struct Sessions {
    /// Sessions by process id.
    by_pid: Mutex<HashMap<i32, Entry>>,
    /// The next process id to hand out.
    next_pid: AtomicI32,
    /// Set once the server shuts down: sessions registered later are
    /// stopped at once.
    shutting_down: std::sync::atomic::AtomicBool,
}

impl Sessions {
    /// An empty registry.
    pub fn new() -> Arc<Sessions> {
        Arc::new(Sessions {
            next_pid: AtomicI32::new(1),
            ..Default::default()
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Entry>> {
        self.by_pid.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session; it stays registered while the returned
    /// registration lives.
    pub fn register(self: &Arc<Self>, interrupt: Arc<Interrupt>) -> Registration {
        if self.shutting_down.load(Ordering::Acquire) {
            interrupt.shut_down();
        }
        let mut map = self.lock();
        let pid = loop {
            // Positive and unused, wrapping after 2^31 connections.
            let pid = self.next_pid.fetch_add(1, Ordering::Relaxed) & i32::MAX;
            if pid != 0 && !map.contains_key(&pid) {
                break pid;
            }
        };
        map.insert(
            pid,
            Entry {
                secret: None,
                interrupt,
            },
        );
        Registration {
            pid,
            sessions: self.clone(),
        }
    }

    /// Cancels the running statement of session `pid` if `secret` is its
    /// key; anything else is ignored (the client hears nothing either way).
    pub fn cancel(&self, pid: i32, secret: &SecretKey) -> bool {
        let map = self.lock();
        match map.get(&pid) {
            Some(Entry {
                secret: Some(s),
                interrupt,
            }) if s.eq_value(secret) => interrupt.cancel(),
            _ => false,
        }
    }

    /// Stops every session's running statement and every later one (57P01):
    /// the server is shutting down.
    pub fn shut_down_all(&self) {
        self.shutting_down.store(true, Ordering::Release);
        for entry in self.lock().values() {
            entry.interrupt.shut_down();
        }
    }

    /// How many sessions are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session's place in [`Sessions`]; dropping it unregisters the session.
pub struct Registration {
    /// The session's process id.
    pub pid: i32,
    sessions: Arc<Sessions>,
}

impl Registration {
    /// The registry this session is in.
    pub fn sessions(&self) -> Arc<Sessions> {
        self.sessions.clone()
    }

    /// Draws the session's secret key for a client of protocol version
    /// 3.0 (`short`: 4 bytes) or later (32 bytes), and records it.
    pub fn new_secret(&self, short: bool) -> SecretKey {
        let secret = if short {
            SecretKey::I32(rand::random::<i32>())
        } else {
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            SecretKey::Bytes(bytes::Bytes::copy_from_slice(&bytes))
        };
        if let Some(e) = self.sessions.lock().get_mut(&self.pid) {
            e.secret = Some(secret.clone());
        }
        secret
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.pid);
    }
}

#[async_trait]
impl CancelHandler for Sessions {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let cancelled = self.cancel(request.pid, &request.secret_key);
        tracing::debug!(pid = request.pid, cancelled, "cancel request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_needs_the_sessions_secret() {
        let sessions = Sessions::new();
        let interrupt = Arc::new(Interrupt::new());
        let reg = sessions.register(interrupt.clone());
        let secret = reg.new_secret(true);
        interrupt.start_query();
        let SecretKey::I32(k) = secret else {
            panic!("a short key")
        };
        assert!(!sessions.cancel(reg.pid, &SecretKey::I32(k.wrapping_add(1))));
        assert!(!sessions.cancel(reg.pid + 1, &SecretKey::I32(k)));
        assert!(interrupt.check().is_ok());
        assert!(sessions.cancel(reg.pid, &SecretKey::I32(k)));
        assert!(interrupt.check().is_err());
        drop(reg);
        assert!(sessions.is_empty());
    }

    #[test]
    fn shutdown_stops_sessions_present_and_future() {
        let sessions = Sessions::new();
        let a = Arc::new(Interrupt::new());
        let _ra = sessions.register(a.clone());
        sessions.shut_down_all();
        assert!(a.is_shut_down());
        let b = Arc::new(Interrupt::new());
        let _rb = sessions.register(b.clone());
        assert!(b.is_shut_down());
    }
}
