//! Transports: how replicas' messages travel between nodes.
//!
//! A [`Transport`] takes [`Envelope`]s and hands each, some time later, to
//! the receiving node's [`Deliver`] callback. Messages may be lost (a
//! broken connection drops what was in flight; Paxos re-sends what
//! matters) but are never reordered between one pair of nodes.
//!
//! Every transport can delay messages by a one-way latency per pair of
//! nodes, taken from the cluster configuration's latency between their
//! datacenters, so that a WAN can be simulated on one machine:
//! - [`Tcp`]: one TCP connection per peer (tokio), frames of a 4-byte
//!   big-endian length and a postcard-encoded `(from, Message)`;
//! - [`Local`]: in-process channels, for tests and benchmarks.
//!
//! The deterministic simulated network of the tests (`tests/sim.rs`)
//! drives replicas directly, without a transport.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{Receiver, Sender, UnboundedSender, channel, unbounded_channel};
use tokio::time::Instant;

use crate::paxos::{Envelope, Message, NodeId};

/// Sends messages to other nodes.
pub trait Transport: Send + Sync {
    /// Queues `env` for delivery to `env.to` (never blocks).
    fn send(&self, env: Envelope);
}

/// Where a node's received messages go: `(sender, message)`.
pub type Deliver = Arc<dyn Fn(NodeId, Message) + Send + Sync>;

/// The largest frame accepted: a bigger length prefix is garbage.
const MAX_FRAME: usize = 256 << 20;

/// How long a writer waits before reconnecting to a peer.
const RECONNECT: Duration = Duration::from_millis(100);

/// Frames queued for one peer at most: beyond that the peer is not
/// keeping up (or is unreachable) and new frames are dropped, as a lossy
/// network would (Paxos re-sends what matters).
const QUEUE: usize = 16_384;

/// A write that takes longer than this means a dead or frozen peer behind
/// a connection that is still open: reconnect.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A peer as a transport sees it.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The peer's id.
    pub id: NodeId,
    /// Its replication address (TCP only).
    pub addr: SocketAddr,
    /// The one-way latency to inject on messages to it.
    pub latency: Duration,
}

/// A message waiting for its delivery time.
type Delayed<T> = (Instant, T);

/// Encodes one frame: length prefix and `(from, msg)`.
pub fn encode_frame(from: NodeId, msg: &Message) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    // Encoding into a Vec cannot fail for these types.
    let body = postcard::to_extend(&(from, msg), Vec::new()).unwrap_or_default();
    out.extend_from_slice(&body);
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Decodes a frame body (without its length prefix).
pub fn decode_frame(body: &[u8]) -> Result<(NodeId, Message), String> {
    postcard::from_bytes(body).map_err(|e| format!("undecodable replication frame: {e}"))
}

/// Replication over TCP between processes.
pub struct Tcp {
    id: NodeId,
    peers: HashMap<NodeId, Arc<Link>>,
    listen: SocketAddr,
}

/// The sending side of the connection to one peer.
struct Link {
    /// Frames for the peer's writer task: those with a latency to wait
    /// out, and those that could not be written at once.
    tx: Sender<Delayed<Vec<u8>>>,
    /// The one-way latency to inject.
    latency: Duration,
    /// The connection, shared with the writer task.
    direct: Mutex<Direct>,
}

/// What a sender needs to write a frame itself. Handing every frame to
/// the writer task costs a thread wake-up per message (on the sending
/// node's busiest path, the leader's), so a frame that is due at once is
/// written by its sender when the writer holds nothing: frames stay in
/// order.
#[derive(Default)]
struct Direct {
    /// The connection, while the writer has one.
    stream: Option<Arc<TcpStream>>,
    /// Frames handed to the writer and not yet written (or dropped).
    queued: usize,
}

impl Link {
    /// Writes `frame` now if it is due and nothing is queued before it;
    /// otherwise (or for what the socket did not take) queues it for the
    /// writer.
    fn send(&self, mut frame: Vec<u8>) {
        let now = Instant::now();
        let mut d = self.direct.lock().unwrap_or_else(|p| p.into_inner());
        if self.latency.is_zero()
            && d.queued == 0
            && let Some(stream) = &d.stream
        {
            match stream.try_write(&frame) {
                Ok(n) if n == frame.len() => return,
                // The rest goes next, through the writer.
                Ok(n) => drop(frame.drain(..n)),
                // Not writable now, or broken: the writer finds out.
                Err(_) => {}
            }
        }
        // Otherwise the queue is full (the peer is not keeping up) or the
        // writer has stopped: the frame is lost, as on a lossy network.
        // (Part of a frame is written only when nothing was queued, so
        // the queue is not full then; a stopped writer took its
        // connection with it.)
        if self.tx.try_send((now + self.latency, frame)).is_ok() {
            d.queued += 1;
        }
    }

    /// The writer is done with `n` frames (written or dropped).
    fn done(&self, n: usize) {
        let mut d = self.direct.lock().unwrap_or_else(|p| p.into_inner());
        d.queued = d.queued.saturating_sub(n);
    }

    /// The writer's connection, or none.
    fn connected(&self, stream: Option<Arc<TcpStream>>) {
        self.direct.lock().unwrap_or_else(|p| p.into_inner()).stream = stream;
    }
}

impl Tcp {
    /// Listens on `listen` for peers' connections (delivering what they
    /// send to `deliver`) and starts one writer per peer. Must be called
    /// inside a tokio runtime, which then runs the transport.
    pub async fn start(
        id: NodeId,
        listen: SocketAddr,
        peers: Vec<Peer>,
        deliver: Deliver,
    ) -> std::io::Result<Tcp> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        tokio::spawn(accept_loop(listener, deliver));
        let mut links = HashMap::new();
        for p in peers {
            let (tx, rx) = channel(QUEUE);
            let link = Arc::new(Link {
                tx,
                latency: p.latency,
                direct: Mutex::new(Direct::default()),
            });
            tokio::spawn(write_loop(p.id, p.addr, rx, link.clone()));
            links.insert(p.id, link);
        }
        Ok(Tcp {
            id,
            peers: links,
            listen,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }
}

impl Transport for Tcp {
    fn send(&self, env: Envelope) {
        let Some(link) = self.peers.get(&env.to) else {
            tracing::warn!(to = env.to, "message for an unknown replica dropped");
            return;
        };
        link.send(encode_frame(self.id, &env.msg));
    }
}

/// Accepts peers' connections and reads each on its own task.
async fn accept_loop(listener: TcpListener, deliver: Deliver) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(read_loop(stream, addr, deliver.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a replication connection");
                tokio::time::sleep(RECONNECT).await;
            }
        }
    }
}

async fn read_loop(mut stream: TcpStream, addr: SocketAddr, deliver: Deliver) {
    let mut body = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return; // closed
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            tracing::warn!(%addr, len, "replication frame too large: closing the connection");
            return;
        }
        body.resize(len, 0);
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        match decode_frame(&body) {
            Ok((from, msg)) => deliver(from, msg),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "closing the replication connection");
                return;
            }
        }
    }
}

/// Keeps a connection to one peer and writes the frames queued for it
/// when they are due (senders write the others themselves: see
/// [`Direct`]). Frames queued while the peer is unreachable are dropped.
async fn write_loop(
    peer: NodeId,
    addr: SocketAddr,
    mut rx: Receiver<Delayed<Vec<u8>>>,
    link: Arc<Link>,
) {
    // However the writer ends (the transport dropped, the runtime shut
    // down), senders stop writing to its connection.
    let _unlink = Unlink(link.clone());
    let mut warned = false;
    // A frame taken from the queue before it was due: it goes first, when
    // it is due, after the write of those before it.
    let mut held: Option<Delayed<Vec<u8>>> = None;
    loop {
        let stream = match TcpStream::connect(addr).await {
            Ok(s) => {
                if warned {
                    tracing::info!(peer, %addr, "replication connection established");
                }
                warned = false;
                s
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(peer, %addr, error = %e, "cannot reach replica; retrying");
                    warned = true;
                }
                // Drop what queued meanwhile: it is stale by now.
                let mut dropped = usize::from(held.take().is_some());
                while rx.try_recv().is_ok() {
                    dropped += 1;
                }
                link.done(dropped);
                tokio::time::sleep(RECONNECT).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stream = Arc::new(stream);
        link.connected(Some(stream.clone()));
        let mut buf = Vec::new();
        loop {
            let (due, frame) = match held.take() {
                Some(next) => next,
                None => match rx.recv().await {
                    Some(next) => next,
                    None => return, // the transport is gone
                },
            };
            // tokio's timer fires on a millisecond tick even when the time
            // has come: a message due now goes at once.
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            buf.clear();
            buf.extend_from_slice(&frame);
            let mut frames = 1;
            // Everything else already due goes in the same write; the
            // first frame not due yet waits for the next (waiting for it
            // here would hold back those before it).
            while buf.len() <= 1 << 20 {
                match rx.try_recv() {
                    Ok((due, frame)) if due <= Instant::now() => {
                        buf.extend_from_slice(&frame);
                        frames += 1;
                    }
                    Ok(later) => {
                        held = Some(later);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let written = tokio::time::timeout(WRITE_TIMEOUT, write_all(&stream, &buf)).await;
            if !matches!(written, Ok(Ok(()))) {
                // No sender may write to this connection any more (a
                // frame after a lost one would arrive out of order).
                link.connected(None);
            }
            link.done(frames);
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(peer, %addr, error = %e, "replication connection lost; reconnecting");
                    break;
                }
                Err(_) => {
                    tracing::warn!(peer, %addr, "replication peer stopped reading; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Takes a writer's connection away from the senders when dropped.
struct Unlink(Arc<Link>);

impl Drop for Unlink {
    fn drop(&mut self) {
        self.0.connected(None);
    }
}

/// Writes all of `buf` to a stream that senders share (see [`Direct`]).
async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// In-process delivery between nodes of one process, with the same
/// per-pair latency as [`Tcp`], and links that tests can cut.
#[derive(Clone, Default)]
pub struct Local {
    nodes: Arc<Mutex<HashMap<NodeId, Deliver>>>,
    /// Pairs (lower id first) whose messages are dropped.
    cut: Arc<Mutex<std::collections::HashSet<(NodeId, NodeId)>>>,
}

impl Local {
    /// An empty network.
    pub fn new() -> Self {
        Local::default()
    }

    /// Registers a node's delivery callback.
    pub fn register(&self, id: NodeId, deliver: Deliver) {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, deliver);
    }

    /// Drops every message between `a` and `b` from now on.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        self.cut
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((a.min(b), a.max(b)));
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.cut.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The transport of node `id`: `latency(to)` is the one-way latency to
    /// inject toward each peer. Must be called inside a tokio runtime.
    pub fn endpoint(&self, id: NodeId, peers: &[(NodeId, Duration)]) -> LocalEndpoint {
        let mut senders = HashMap::new();
        for &(to, latency) in peers {
            let (tx, mut rx) = unbounded_channel::<Delayed<Message>>();
            let nodes = self.nodes.clone();
            let cut = self.cut.clone();
            tokio::spawn(async move {
                while let Some((due, msg)) = rx.recv().await {
                    // As in `write_loop`: not through the timer when due.
                    if due > Instant::now() {
                        tokio::time::sleep_until(due).await;
                    }
                    let pair = (id.min(to), id.max(to));
                    if cut
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(&pair)
                    {
                        continue;
                    }
                    let deliver = nodes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&to)
                        .cloned();
                    if let Some(d) = deliver {
                        d(id, msg);
                    }
                }
            });
            senders.insert(to, (tx, latency));
        }
        LocalEndpoint { peers: senders }
    }
}

/// One node's side of a [`Local`] network.
pub struct LocalEndpoint {
    peers: HashMap<NodeId, (UnboundedSender<Delayed<Message>>, Duration)>,
}

impl Transport for LocalEndpoint {
    fn send(&self, env: Envelope) {
        if let Some((tx, latency)) = self.peers.get(&env.to) {
            let _ = tx.send((Instant::now() + *latency, env.msg));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::{Ballot, Value};

    #[test]
    fn frames_roundtrip_and_garbage_is_an_error() {
        let msg = Message::Accept {
            ballot: Ballot { epoch: 3, node: 2 },
            entries: vec![
                (
                    7,
                    Value::Batch {
                        origin: Default::default(),
                        first: true,
                        data: vec![1, 2, 3].into(),
                    },
                ),
                (8, Value::Noop),
            ],
            chosen: 6,
            forget: 1,
            sent: 9,
        };
        let frame = encode_frame(2, &msg);
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode_frame(&frame[4..]).unwrap(), (2, msg));
        assert!(decode_frame(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode_frame(&frame[4..frame.len() - 1]).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tcp_delivers_in_order_with_latency() {
        let (tx, mut rx) = unbounded_channel();
        let deliver: Deliver = Arc::new(move |from, msg| {
            let _ = tx.send((from, msg, Instant::now()));
        });
        let b = Tcp::start(2, "127.0.0.1:0".parse().unwrap(), vec![], deliver)
            .await
            .unwrap();
        let a = Tcp::start(
            1,
            "127.0.0.1:0".parse().unwrap(),
            vec![Peer {
                id: 2,
                addr: b.local_addr(),
                latency: Duration::from_millis(30),
            }],
            Arc::new(|_, _| {}),
        )
        .await
        .unwrap();
        let sent = Instant::now();
        for from in 1..=50u64 {
            a.send(Envelope {
                from: 1,
                to: 2,
                msg: Message::CatchUp { from },
            });
        }
        for want in 1..=50u64 {
            let (from, msg, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(from, 1);
            assert_eq!(msg, Message::CatchUp { from: want });
            assert!(
                at - sent >= Duration::from_millis(30),
                "latency not injected"
            );
        }
    }

    /// Without latency, senders (threads outside the runtime) write frames
    /// themselves whenever the writer holds none, and hand it the rest of
    /// a frame the socket took only part of: with two senders of large
    /// and small frames at once, every frame arrives whole, and each
    /// sender's in its order.
    #[test]
    fn tcp_senders_writing_directly_keep_frames_whole_and_in_order() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let deliver: Deliver = Arc::new(move |_, msg| {
            let _ = tx.send(msg);
        });
        let b = rt
            .block_on(Tcp::start(
                2,
                "127.0.0.1:0".parse().unwrap(),
                vec![],
                deliver,
            ))
            .unwrap();
        let peer = Peer {
            id: 2,
            addr: b.local_addr(),
            latency: Duration::ZERO,
        };
        let a = rt
            .block_on(Tcp::start(
                1,
                "127.0.0.1:0".parse().unwrap(),
                vec![peer],
                Arc::new(|_, _| {}),
            ))
            .unwrap();
        // Until the connection is up, frames go through the writer; wait
        // for one, so that the rest can be written directly.
        a.send(Envelope {
            from: 1,
            to: 2,
            msg: Message::CatchUp { from: 0 },
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            Message::CatchUp { from: 0 }
        );
        const N: u64 = 200;
        let big = |slot: u64| Message::Accept {
            ballot: Ballot { epoch: 1, node: 1 },
            entries: vec![(
                slot,
                Value::Batch {
                    origin: Default::default(),
                    first: false,
                    data: vec![slot as u8; 300 << 10].into(),
                },
            )],
            chosen: 0,
            forget: 0,
            sent: 0,
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 1..=N {
                    let msg = if i % 2 == 0 {
                        big(i)
                    } else {
                        Message::CatchUp { from: i }
                    };
                    a.send(Envelope {
                        from: 1,
                        to: 2,
                        msg,
                    });
                }
            });
            s.spawn(|| {
                for i in 1..=N {
                    let msg = Message::CatchUp { from: 1_000 + i };
                    a.send(Envelope {
                        from: 1,
                        to: 2,
                        msg,
                    });
                }
            });
        });
        let (mut first, mut second) = (Vec::new(), Vec::new());
        while first.len() + second.len() < 2 * N as usize {
            match rx
                .recv_timeout(Duration::from_secs(10))
                .expect("a frame was lost")
            {
                Message::CatchUp { from } if from > 1_000 => second.push(from - 1_000),
                Message::CatchUp { from } => first.push(from),
                Message::Accept { entries, .. } => {
                    let (slot, value) = &entries[0];
                    let Value::Batch { data, .. } = value else {
                        panic!("not a batch")
                    };
                    assert!(data.len() == 300 << 10 && data.iter().all(|&b| b == *slot as u8));
                    first.push(*slot);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(first, (1..=N).collect::<Vec<_>>());
        assert_eq!(second, (1..=N).collect::<Vec<_>>());
    }
}
