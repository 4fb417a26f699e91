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
//!   big-endian length and a postcard-encoded `(from, Message)`, after a
//!   handshake in which both ends prove they hold the cluster's secret
//!   (see [`ClusterKey`]);
//! - [`Local`]: in-process channels, for tests and benchmarks.
//!
//! The deterministic simulated network of the tests (`tests/sim.rs`)
//! drives replicas directly, without a transport.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{Receiver, Sender, UnboundedSender, channel, unbounded_channel};
use tokio::time::Instant;

use crate::paxos::{Envelope, Message, NodeId};

/// Sends messages to other nodes.
pub trait Transport: Send + Sync {
    /// Queues `env` for delivery to `env.to` (never blocks).
    fn send(&self, env: Envelope);

    /// How many connections and frames were refused since the start: a
    /// failed or missing handshake, a frame too large, undecodable or
    /// naming another sender than the authenticated peer (each closes its
    /// connection).
    fn refused(&self) -> u64 {
        0
    }
}

/// Where a node's received messages go: `(sender, message)`.
pub type Deliver = Arc<dyn Fn(NodeId, Message) + Send + Sync>;

/// The largest frame accepted: a bigger length prefix is garbage. A frame
/// is read as it arrives, not allocated in full from its length prefix.
const MAX_FRAME: usize = 256 << 20;

/// A connection that has not completed its handshake within this long is
/// closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The first bytes a listening node sends: the protocol and its version.
const HELLO: &[u8; 8] = b"MAKOREP1";

/// Bytes of a handshake nonce.
const NONCE: usize = 16;

/// Bytes of a handshake MAC (HMAC-SHA256).
const TAG: usize = 32;

/// The cluster's shared secret, which every node of the cluster file holds
/// (its `secret_file`). A replication connection starts with a handshake
/// that proves to each end that the other holds it, without sending it:
///
/// 1. the listening node sends `HELLO`, its id and a random nonce `Ns`;
/// 2. the connecting node sends its id, a random nonce `Nc` and
///    `HMAC(secret, "client" | Ns | Nc | its id | the listener's id)`;
/// 3. the listener checks that the id is one of its peers and the MAC,
///    and answers `HMAC(secret, "server" | Nc | Ns | its id | the
///    connecting id)`, which the connecting node checks.
///
/// Only then are frames read, and every frame on the connection must name
/// the authenticated peer as its sender. A node without the secret (or
/// one not in the cluster file) can neither inject messages nor receive
/// any. The frames themselves are neither encrypted nor individually
/// authenticated: someone who can alter TCP streams between nodes (not
/// just connect to them) is not kept out, as without TLS.
#[derive(Clone)]
pub struct ClusterKey(Arc<[u8]>);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// The shortest secret accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// A key from the secret's bytes: at least [`Self::MIN_LEN`] of them.
    pub fn new(secret: &[u8]) -> Result<ClusterKey, String> {
        if secret.len() < Self::MIN_LEN {
            return Err(format!(
                "the cluster secret is {} bytes; it must be at least {}",
                secret.len(),
                Self::MIN_LEN
            ));
        }
        Ok(ClusterKey(secret.into()))
    }

    fn mac(&self, label: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts any key length");
        mac.update(label);
        for p in parts {
            mac.update(p);
        }
        mac
    }

    fn tag(&self, label: &[u8], parts: &[&[u8]]) -> [u8; TAG] {
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(&self.mac(label, parts).finalize().into_bytes());
        tag
    }

    /// Checks `tag` in constant time.
    fn verify(&self, label: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        self.mac(label, parts).verify_slice(tag).is_ok()
    }
}

/// The listening side of the handshake (see [`ClusterKey`]): the
/// authenticated peer's id.
async fn accept_handshake(
    stream: &mut TcpStream,
    me: NodeId,
    key: &ClusterKey,
    peers: &HashSet<NodeId>,
) -> Result<NodeId, String> {
    let ns: [u8; NONCE] = rand::random();
    let mut hello = Vec::with_capacity(HELLO.len() + 4 + NONCE);
    hello.extend_from_slice(HELLO);
    hello.extend_from_slice(&me.to_be_bytes());
    hello.extend_from_slice(&ns);
    stream.write_all(&hello).await.map_err(|e| e.to_string())?;
    let mut reply = [0u8; 4 + NONCE + TAG];
    stream
        .read_exact(&mut reply)
        .await
        .map_err(|e| format!("no handshake: {e}"))?;
    let peer = NodeId::from_be_bytes(reply[..4].try_into().expect("4 bytes"));
    let nc = &reply[4..4 + NONCE];
    if !peers.contains(&peer) {
        return Err(format!("node id {peer} is not a peer of this node"));
    }
    let (peer_b, me_b) = (peer.to_be_bytes(), me.to_be_bytes());
    if !key.verify(b"client", &[&ns, nc, &peer_b, &me_b], &reply[4 + NONCE..]) {
        return Err(format!(
            "node id {peer} failed authentication (is its cluster secret the same?)"
        ));
    }
    let answer = key.tag(b"server", &[nc, &ns, &me_b, &peer_b]);
    stream.write_all(&answer).await.map_err(|e| e.to_string())?;
    Ok(peer)
}

/// The connecting side of the handshake with `peer` (see [`ClusterKey`]).
async fn connect_handshake(
    stream: &mut TcpStream,
    me: NodeId,
    peer: NodeId,
    key: &ClusterKey,
) -> Result<(), String> {
    let mut hello = [0u8; HELLO.len() + 4 + NONCE];
    stream
        .read_exact(&mut hello)
        .await
        .map_err(|e| format!("no handshake: {e}"))?;
    if &hello[..HELLO.len()] != HELLO {
        return Err("not a mako replication port (or another version of mako)".into());
    }
    let at = HELLO.len();
    let theirs = NodeId::from_be_bytes(hello[at..at + 4].try_into().expect("4 bytes"));
    if theirs != peer {
        return Err(format!(
            "the node there is id {theirs}, not {peer} (do the nodes use the same cluster file?)"
        ));
    }
    let ns = &hello[at + 4..];
    let nc: [u8; NONCE] = rand::random();
    let (me_b, peer_b) = (me.to_be_bytes(), peer.to_be_bytes());
    let mut reply = Vec::with_capacity(4 + NONCE + TAG);
    reply.extend_from_slice(&me_b);
    reply.extend_from_slice(&nc);
    reply.extend_from_slice(&key.tag(b"client", &[ns, &nc, &me_b, &peer_b]));
    stream.write_all(&reply).await.map_err(|e| e.to_string())?;
    let mut answer = [0u8; TAG];
    stream.read_exact(&mut answer).await.map_err(|_| {
        "the peer closed the connection during the handshake (does it have the same \
         cluster secret, and this node in its cluster file?)"
            .to_string()
    })?;
    if !key.verify(b"server", &[&nc, ns, &peer_b, &me_b], &answer) {
        return Err("the peer failed authentication (is its cluster secret the same?)".into());
    }
    Ok(())
}

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
    /// See [`Transport::refused`].
    refused: Arc<AtomicU64>,
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
    ///
    /// Connections in both directions are authenticated with `key` (see
    /// [`ClusterKey`]); only `peers` may connect.
    pub async fn start(
        id: NodeId,
        listen: SocketAddr,
        peers: Vec<Peer>,
        key: ClusterKey,
        deliver: Deliver,
    ) -> std::io::Result<Tcp> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let allowed: Arc<HashSet<NodeId>> = Arc::new(peers.iter().map(|p| p.id).collect());
        let refused = Arc::new(AtomicU64::new(0));
        tokio::spawn(accept_loop(
            listener,
            id,
            key.clone(),
            allowed,
            deliver,
            refused.clone(),
        ));
        let mut links = HashMap::new();
        for p in peers {
            let (tx, rx) = channel(QUEUE);
            let link = Arc::new(Link {
                tx,
                latency: p.latency,
                direct: Mutex::new(Direct::default()),
            });
            tokio::spawn(write_loop(id, p.id, p.addr, key.clone(), rx, link.clone()));
            links.insert(p.id, link);
        }
        Ok(Tcp {
            id,
            peers: links,
            listen,
            refused,
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

    fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Accepts peers' connections and reads each on its own task.
async fn accept_loop(
    listener: TcpListener,
    me: NodeId,
    key: ClusterKey,
    peers: Arc<HashSet<NodeId>>,
    deliver: Deliver,
    refused: Arc<AtomicU64>,
) {
    loop {
        match listener.accept().await {
            Ok((mut stream, addr)) => {
                let _ = stream.set_nodelay(true);
                let (key, peers, deliver) = (key.clone(), peers.clone(), deliver.clone());
                let refused = refused.clone();
                tokio::spawn(async move {
                    let shake = accept_handshake(&mut stream, me, &key, &peers);
                    let clean = match tokio::time::timeout(HANDSHAKE_TIMEOUT, shake).await {
                        Ok(Ok(peer)) => read_loop(stream, addr, peer, deliver).await,
                        Ok(Err(e)) => {
                            tracing::warn!(%addr, error = %e, "replication connection refused");
                            false
                        }
                        Err(_) => {
                            tracing::warn!(%addr, "replication connection refused: no handshake in time");
                            false
                        }
                    };
                    if !clean {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a replication connection");
                tokio::time::sleep(RECONNECT).await;
            }
        }
    }
}

/// Reads the frames of an authenticated connection from `peer` until it
/// closes (true) or sends a frame that closes it (false).
async fn read_loop(
    mut stream: TcpStream,
    addr: SocketAddr,
    peer: NodeId,
    deliver: Deliver,
) -> bool {
    let mut body = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return true; // closed
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            tracing::warn!(%addr, len, "replication frame too large: closing the connection");
            return false;
        }
        // Grown as the bytes arrive: a length prefix alone reserves
        // nothing. A large frame's buffer (a snapshot's) is not kept.
        if body.capacity() > 1 << 20 {
            body = Vec::new();
        }
        body.clear();
        match (&mut stream).take(len as u64).read_to_end(&mut body).await {
            Ok(n) if n == len => {}
            _ => return true, // closed mid-frame
        }
        match decode_frame(&body) {
            Ok((from, msg)) if from == peer => deliver(from, msg),
            Ok((from, _)) => {
                tracing::warn!(
                    %addr,
                    peer,
                    claimed = from,
                    "a frame names another sender than the authenticated peer: closing the connection"
                );
                return false;
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "closing the replication connection");
                return false;
            }
        }
    }
}

/// Keeps a connection to one peer and writes the frames queued for it
/// when they are due (senders write the others themselves: see
/// [`Direct`]). Frames queued while the peer is unreachable are dropped.
async fn write_loop(
    me: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    key: ClusterKey,
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
        let connected = async {
            let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let shake = connect_handshake(&mut s, me, peer, &key);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, shake).await {
                Ok(Ok(())) => Ok(s),
                Ok(Err(e)) => Err(e),
                Err(_) => Err("no handshake in time".to_string()),
            }
        };
        let stream = match connected.await {
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

    fn key() -> ClusterKey {
        ClusterKey::new(b"a test cluster secret").unwrap()
    }

    /// A peer that may connect to the node under test but that the node
    /// cannot reach (the discard port, closed here).
    fn unreachable(id: NodeId) -> Peer {
        Peer {
            id,
            addr: "127.0.0.1:9".parse().unwrap(),
            latency: Duration::ZERO,
        }
    }

    #[test]
    fn frames_roundtrip_and_garbage_is_an_error() {
        let msg = Message::Accept {
            ballot: Ballot { number: 3, node: 2 },
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
        let b = Tcp::start(
            2,
            "127.0.0.1:0".parse().unwrap(),
            vec![unreachable(1)],
            key(),
            deliver,
        )
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
            key(),
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

    /// Only a node that holds the cluster's secret and is one of the
    /// node's peers gets a message delivered, and it cannot speak for
    /// another node.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tcp_delivers_only_from_authenticated_peers() {
        let (tx, mut rx) = unbounded_channel();
        let deliver: Deliver = Arc::new(move |from, msg| {
            let _ = tx.send((from, msg));
        });
        let b = Tcp::start(
            2,
            "127.0.0.1:0".parse().unwrap(),
            vec![unreachable(1)],
            key(),
            deliver,
        )
        .await
        .unwrap();
        let addr = b.local_addr();
        let msg = |from| Message::CatchUp { from };
        let silent = Duration::from_millis(700);

        // A node with another secret, through the real transport.
        let wrong = Tcp::start(
            1,
            "127.0.0.1:0".parse().unwrap(),
            vec![Peer {
                id: 2,
                addr,
                latency: Duration::ZERO,
            }],
            ClusterKey::new(b"another cluster's secret").unwrap(),
            Arc::new(|_, _| {}),
        )
        .await
        .unwrap();
        for i in 0..10 {
            wrong.send(Envelope {
                from: 1,
                to: 2,
                msg: msg(i),
            });
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert!(
            tokio::time::timeout(silent, rx.recv()).await.is_err(),
            "delivered from a node without the secret"
        );
        drop(wrong);

        // A client that skips the handshake and sends frames: the listener
        // reads the first bytes as a handshake, refuses it and closes the
        // connection. (As many bytes as a handshake, so that the close is
        // not a reset for unread data.)
        let mut raw = TcpStream::connect(addr).await.unwrap();
        let mut frames = Vec::new();
        for i in 0..10 {
            frames.extend_from_slice(&encode_frame(1, &msg(i)));
        }
        raw.write_all(&frames[..4 + NONCE + TAG]).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut got))
            .await
            .expect("the listener closes the connection")
            .unwrap();
        assert_eq!(&got[..HELLO.len()], HELLO);
        assert_eq!(
            got.len(),
            HELLO.len() + 4 + NONCE,
            "no answer to a bad handshake"
        );

        // The right secret with an id that is not a peer.
        let mut stranger = TcpStream::connect(addr).await.unwrap();
        assert!(
            connect_handshake(&mut stranger, 3, 2, &key())
                .await
                .is_err()
        );
        // Dialing a node that is not the one expected.
        let mut misdialed = TcpStream::connect(addr).await.unwrap();
        let e = connect_handshake(&mut misdialed, 1, 4, &key())
            .await
            .unwrap_err();
        assert!(e.contains("not 4"), "{e}");

        // The right secret and id: frames naming it are delivered; a frame
        // naming another node closes the connection, and what follows it
        // is not read.
        let mut peer = TcpStream::connect(addr).await.unwrap();
        connect_handshake(&mut peer, 1, 2, &key()).await.unwrap();
        peer.write_all(&encode_frame(1, &msg(7))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("delivered")
            .unwrap();
        assert_eq!(got, (1, msg(7)));
        peer.write_all(&encode_frame(3, &msg(8))).await.unwrap();
        peer.write_all(&encode_frame(1, &msg(9))).await.unwrap();
        assert!(
            tokio::time::timeout(silent, rx.recv()).await.is_err(),
            "a frame naming another sender, or one after it, was delivered"
        );
        // Counted: the other secret's connection, the raw client, the
        // stranger and the frame naming another sender (the misdialed
        // connection is refused by its dialer).
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.refused() < 4 {
            assert!(Instant::now() < deadline, "refused: {}", b.refused());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ClusterKey::new(b"short").is_err());
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
                vec![unreachable(1)],
                key(),
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
                key(),
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
            ballot: Ballot { number: 1, node: 1 },
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
