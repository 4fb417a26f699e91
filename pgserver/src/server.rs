//! The listener: accepts clients until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use txn::Db;

use crate::handler::{Connection, ServerLimits};
use crate::sessions::Sessions;

/// A running server (for tests): its address and a handle to stop it.
pub struct RunningServer {
    /// The address clients connect to.
    pub addr: SocketAddr,
    /// The node's shards.
    pub db: Arc<Db>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Accepts connections on `listener` until `shutdown` completes. Each
/// client gets its own session; a client's failure never affects others.
/// At shutdown every running statement is stopped (57P01), so that the
/// runtime, which waits for its blocking threads, can end.
pub async fn serve(
    listener: TcpListener,
    db: Arc<Db>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let sessions = Sessions::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                sessions.shut_down_all();
                break;
            }
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let conn = Arc::new(Connection::new(db.clone(), &sessions, &limits));
                    // When it ends, its socket closes and its session's
                    // transaction rolls back.
                    tokio::spawn(crate::protocol::serve_client(socket, peer, conn));
                }
                Err(e) => {
                    // Out of file descriptors and the like: keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// The number of tables in the catalog (for the recovery report); 0 if it
/// cannot be read.
pub fn count_tables(db: &Arc<Db>) -> usize {
    let mut txn = db.begin();
    sql::catalog::list_tables(&mut txn).map_or(0, |t| t.len())
}

/// Starts a server on `addr` (use port 0 for any free port) in the current
/// tokio runtime.
pub async fn start(addr: &str, db: Arc<Db>) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(serve(
        listener,
        db.clone(),
        ServerLimits::default(),
        async {
            let _ = rx.await;
        },
    ));
    Ok(RunningServer {
        addr,
        db,
        stop: Some(tx),
        task: Some(task),
    })
}
