//! The stream on openraft (`consensus = "raft"`): the same interface as
//! [`crate::stream::Stream`] — propose a batch with a token, get chosen
//! entries in order through a [`Machine`], status, storage on the node's
//! disk, messages over a [`Transport`] — implemented with openraft 0.9
//! (its v2 storage traits).
//!
//! - Raft log index `i` is stream slot `i + 1` (openraft's first entry,
//!   the initial membership, has index 0). Blank and membership entries
//!   reach the machine as [`Chosen::Noop`].
//! - Log entries and the vote are written through [`RaftDisk`] (synced)
//!   before openraft is told they are durable.
//! - Raft RPCs travel as [`Message::Raft`] frames: a request carries an id,
//!   and its reply completes the caller's future; a lost message times
//!   out.
//! - A proposal carries (node, incarnation, sequence number), so that the
//!   proposer's own batches come back as [`Chosen::Own`].
//! - Snapshots: openraft builds one every `snapshot_every` entries from
//!   the machine's checkpointed state ([`Machine::snapshot`], the same
//!   data the Paxos stream sends), then purges the log behind it (keeping
//!   as many entries again); a follower that needs purged entries
//!   receives the snapshot in chunks and hands it to the machine
//!   ([`Machine::receive_snapshot`]), which installs it (a node restarts
//!   to do so). The snapshot's metadata and the purge point are kept on
//!   the disk (`rs`, `rp`). openraft 0.9 holds a snapshot in memory
//!   while it is built, sent or received.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, EmptyNode, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftNetwork, RaftNetworkFactory, RaftSnapshotBuilder, ServerState, Snapshot, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use crate::net::{Deliver, Transport};
use crate::paxos::{Ballot, Envelope, Message, NodeId, NotLeader, Slot};
use crate::snapshot::{Received, SnapshotSource};
use crate::stream::{Chosen, Machine, Status};

/// A proposed batch, with who proposed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The proposing node.
    pub origin: u64,
    /// Its process (a random number per start).
    pub incarnation: u64,
    /// Its proposal number.
    pub seq: u64,
    /// The batch.
    pub bytes: Vec<u8>,
}

openraft::declare_raft_types!(
    /// openraft's types for a stream.
    pub Types:
        D = Batch,
        R = (),
        NodeId = u64,
        Node = EmptyNode,
        Entry = Entry<Types>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

type Sid = u64;

/// Keys and values, in key order.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Where a raft stream keeps its log and vote (a node's data directory).
pub trait RaftDisk: Send + Sync + 'static {
    /// Writes `puts` and deletes the keys in `delete` ([from, to)), in one
    /// atomic write, synced if `sync`.
    fn write(
        &self,
        puts: KeyValues,
        delete: Option<(Vec<u8>, Vec<u8>)>,
        sync: bool,
    ) -> Result<(), String>;

    /// Every record, in key order.
    fn scan(&self) -> Result<KeyValues, String>;
}

const VOTE_KEY: &[u8] = b"rv";
/// The last purged log id.
const PURGED_KEY: &[u8] = b"rp";
/// The metadata of the last snapshot built or installed.
const SNAPSHOT_KEY: &[u8] = b"rs";

/// openraft's snapshot metadata.
type Meta = openraft::SnapshotMeta<Sid, EmptyNode>;

fn log_key(index: u64) -> Vec<u8> {
    let mut k = b"rl".to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn io_err(e: impl ToString) -> StorageError<Sid> {
    StorageIOError::write_logs(AnyError::error(e)).into()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct LogInner {
    entries: BTreeMap<u64, Entry<Types>>,
    vote: Option<Vote<Sid>>,
    purged: Option<LogId<Sid>>,
    /// The last snapshot's metadata.
    snapshot: Option<Meta>,
}

/// The log store: entries in memory, written through to the disk.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
    disk: Arc<dyn RaftDisk>,
    /// Counts appends, so that a leader's heartbeat in flight can give
    /// way to the entries just appended (see [`Connection`]).
    appended: Arc<tokio::sync::watch::Sender<u64>>,
}

impl LogStore {
    /// Loads the log and vote from `disk`.
    pub fn load(disk: Arc<dyn RaftDisk>) -> Result<LogStore, String> {
        let mut inner = LogInner::default();
        for (k, v) in disk.scan()? {
            if k == VOTE_KEY {
                inner.vote = Some(postcard::from_bytes(&v).map_err(|e| e.to_string())?);
            } else if k == PURGED_KEY {
                inner.purged = Some(postcard::from_bytes(&v).map_err(|e| e.to_string())?);
            } else if k == SNAPSHOT_KEY {
                inner.snapshot = Some(postcard::from_bytes(&v).map_err(|e| e.to_string())?);
            } else if k.starts_with(b"rl") {
                let e: Entry<Types> = postcard::from_bytes(&v).map_err(|e| e.to_string())?;
                inner.entries.insert(e.log_id.index, e);
            }
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
            disk,
            appended: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// The log id of entry `index`, from the log, or from the last
    /// snapshot or purge point when the entry is gone.
    fn log_id_at(&self, index: u64) -> Option<LogId<Sid>> {
        let inner = lock(&self.inner);
        inner
            .entries
            .get(&index)
            .map(|e| e.log_id)
            .or_else(|| {
                inner
                    .snapshot
                    .as_ref()
                    .and_then(|m| m.last_log_id)
                    .filter(|l| l.index == index)
            })
            .or(inner.purged.filter(|l| l.index == index))
    }

    /// The last membership entry at or below `index` (from the last
    /// snapshot's metadata if the log no longer has it).
    fn membership_at(&self, index: u64) -> StoredMembership<Sid, EmptyNode> {
        let inner = lock(&self.inner);
        for e in inner.entries.range(..=index).rev().map(|(_, e)| e) {
            if let EntryPayload::Membership(m) = &e.payload {
                return StoredMembership::new(Some(e.log_id), m.clone());
            }
        }
        inner
            .snapshot
            .as_ref()
            .map(|m| m.last_membership.clone())
            .unwrap_or_default()
    }

    /// A snapshot up to `last` is being installed: the log up to it goes
    /// (and all of it, if its entry at `last` is another one: the rest is
    /// then from a history that was not chosen), and the snapshot's
    /// metadata and the purge point are kept.
    fn install_point(&self, meta: &Meta, last: LogId<Sid>) -> Result<(), String> {
        let matches = lock(&self.inner)
            .entries
            .get(&last.index)
            .is_some_and(|e| e.log_id == last);
        let upto = if matches { last.index + 1 } else { u64::MAX };
        let puts = vec![
            (
                SNAPSHOT_KEY.to_vec(),
                postcard::to_allocvec(meta).map_err(|e| e.to_string())?,
            ),
            (
                PURGED_KEY.to_vec(),
                postcard::to_allocvec(&last).map_err(|e| e.to_string())?,
            ),
        ];
        self.disk
            .write(puts, Some((log_key(0), log_key(upto))), true)?;
        let mut inner = lock(&self.inner);
        inner.entries = if matches {
            inner.entries.split_off(&upto)
        } else {
            BTreeMap::new()
        };
        inner.purged = Some(last);
        inner.snapshot = Some(meta.clone());
        Ok(())
    }

    /// Records the metadata of a snapshot built or installed.
    fn save_snapshot_meta(&self, meta: &Meta) -> Result<(), String> {
        let v = postcard::to_allocvec(meta).map_err(|e| e.to_string())?;
        self.disk
            .write(vec![(SNAPSHOT_KEY.to_vec(), v)], None, true)?;
        lock(&self.inner).snapshot = Some(meta.clone());
        Ok(())
    }
}

impl RaftLogReader<Types> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<Types>>, StorageError<Sid>> {
        let start = match range.start_bound() {
            Bound::Included(s) => Bound::Included(*s),
            Bound::Excluded(s) => Bound::Excluded(*s),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(s) => Bound::Included(*s),
            Bound::Excluded(s) => Bound::Excluded(*s),
            Bound::Unbounded => Bound::Unbounded,
        };
        Ok(lock(&self.inner)
            .entries
            .range((start, end))
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<Types> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<Types>, StorageError<Sid>> {
        let inner = lock(&self.inner);
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.purged);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<Sid>) -> Result<(), StorageError<Sid>> {
        let v = postcard::to_allocvec(vote).map_err(io_err)?;
        self.disk
            .write(vec![(VOTE_KEY.to_vec(), v)], None, true)
            .map_err(io_err)?;
        lock(&self.inner).vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<Sid>>, StorageError<Sid>> {
        Ok(lock(&self.inner).vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Types>,
    ) -> Result<(), StorageError<Sid>>
    where
        I: IntoIterator<Item = Entry<Types>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<Types>> = entries.into_iter().collect();
        let mut puts = Vec::with_capacity(entries.len());
        for e in &entries {
            puts.push((
                log_key(e.log_id.index),
                postcard::to_allocvec(e).map_err(io_err)?,
            ));
        }
        {
            let mut inner = lock(&self.inner);
            for e in entries {
                inner.entries.insert(e.log_id.index, e);
            }
        }
        // On a blocking thread: the runtime's worker goes on reading the
        // network (and sending to followers) during the sync.
        let disk = self.disk.clone();
        let written = tokio::task::spawn_blocking(move || disk.write(puts, None, true))
            .await
            .unwrap_or_else(|e| Err(format!("the log write did not finish: {e}")));
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                self.appended.send_modify(|n| *n = n.wrapping_add(1));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.clone())));
                Err(io_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<Sid>) -> Result<(), StorageError<Sid>> {
        self.disk
            .write(
                Vec::new(),
                Some((log_key(log_id.index), log_key(u64::MAX))),
                true,
            )
            .map_err(io_err)?;
        let mut inner = lock(&self.inner);
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<Sid>) -> Result<(), StorageError<Sid>> {
        let purged = postcard::to_allocvec(&log_id).map_err(io_err)?;
        self.disk
            .write(
                vec![(PURGED_KEY.to_vec(), purged)],
                Some((log_key(0), log_key(log_id.index + 1))),
                false,
            )
            .map_err(io_err)?;
        let mut inner = lock(&self.inner);
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        inner.purged = Some(log_id);
        Ok(())
    }
}

/// Tokens of this node's proposals not yet applied, by sequence number.
type Pending<T> = Arc<Mutex<HashMap<u64, T>>>;

/// The state machine: hands entries to the stream's [`Machine`].
pub struct StateMachine<T> {
    machine: Arc<Mutex<Box<dyn Machine<T>>>>,
    pending: Pending<T>,
    me: u64,
    incarnation: u64,
    last_applied: Option<LogId<Sid>>,
    membership: StoredMembership<Sid, EmptyNode>,
    log: LogStore,
}

fn snapshot_err(what: impl ToString) -> StorageError<Sid> {
    StorageIOError::write_snapshot(None, AnyError::error(what.to_string())).into()
}

/// Builds snapshots from the machine's checkpointed state.
pub struct Builder<T> {
    machine: Arc<Mutex<Box<dyn Machine<T>>>>,
    log: LogStore,
}

/// Reads every part of `source`, each as a length (u32 LE) and the bytes.
fn read_parts(mut source: Box<dyn SnapshotSource>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(part) = source.next_part()? {
        let len = u32::try_from(part.len()).map_err(|_| "a snapshot part over 4 GB")?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&part);
    }
    Ok(out)
}

/// The parts of a snapshot written by [`read_parts`].
fn split_parts(mut data: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut parts = Vec::new();
    while !data.is_empty() {
        if data.len() < 4 {
            return Err("a snapshot is cut short".into());
        }
        let len = u32::from_le_bytes(data[..4].try_into().expect("4 bytes")) as usize;
        if data.len() < 4 + len {
            return Err("a snapshot is cut short".into());
        }
        parts.push(&data[4..4 + len]);
        data = &data[4 + len..];
    }
    Ok(parts)
}

/// How long a snapshot build waits for the machine to checkpoint
/// something it can be built from: a failed build stops openraft.
const BUILD_PATIENCE: Duration = Duration::from_secs(60);

impl<T: Send + 'static> Builder<T> {
    /// A snapshot of the machine's checkpointed state: slot `s` is raft
    /// index `s - 1`, so a snapshot holding every slot below `s` holds
    /// every entry up to index `s - 2`. Until the machine has
    /// checkpointed something (it does about once a second), waits up
    /// to `patience`.
    async fn build(&self, patience: Duration) -> Result<Snapshot<Types>, StorageError<Sid>> {
        let started = std::time::Instant::now();
        // A build is asked for once enough entries were applied since the
        // last snapshot; the checkpoint follows within about a second.
        let after = lock(&self.log.inner)
            .snapshot
            .as_ref()
            .and_then(|m| m.last_log_id)
            .map(|l| l.index);
        let (source, index, log_id) = loop {
            let source = lock(&self.machine)
                .snapshot()
                .ok_or_else(|| snapshot_err("this replica cannot make a snapshot"))?;
            let index = source.slot().checked_sub(2);
            let newer = index.is_some_and(|i| after.is_none_or(|a| i > a));
            match index.map(|i| (i, self.log.log_id_at(i))) {
                Some((i, Some(log_id))) if newer || started.elapsed() >= patience => {
                    break (source, i, log_id);
                }
                _ if started.elapsed() < patience => {
                    drop(source);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Some((i, None)) => {
                    return Err(snapshot_err(format!("the log id of entry {i} is unknown")));
                }
                _ => return Err(snapshot_err("nothing is checkpointed yet")),
            }
        };
        let data = tokio::task::spawn_blocking(move || read_parts(source))
            .await
            .map_err(snapshot_err)?
            .map_err(snapshot_err)?;
        let meta = Meta {
            last_log_id: Some(log_id),
            last_membership: self.log.membership_at(index),
            snapshot_id: format!("{}-{index}", log_id.leader_id.term),
        };
        self.log.save_snapshot_meta(&meta).map_err(snapshot_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<T: Send + 'static> RaftSnapshotBuilder<Types> for Builder<T> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Types>, StorageError<Sid>> {
        self.build(BUILD_PATIENCE).await
    }
}

impl<T: Send + 'static> RaftStateMachine<Types> for StateMachine<T> {
    type SnapshotBuilder = Builder<T>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<Sid>>, StoredMembership<Sid, EmptyNode>), StorageError<Sid>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<Sid>>
    where
        I: IntoIterator<Item = Entry<Types>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut machine = lock(&self.machine);
        for e in entries {
            let slot: Slot = e.log_id.index + 1;
            let chosen = match e.payload {
                EntryPayload::Blank => Chosen::Noop,
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(e.log_id), m);
                    Chosen::Noop
                }
                EntryPayload::Normal(b) => {
                    let own = (b.origin == self.me && b.incarnation == self.incarnation)
                        .then(|| lock(&self.pending).remove(&b.seq))
                        .flatten();
                    match own {
                        Some(token) => Chosen::Own(token),
                        None => Chosen::Other(b.bytes.into()),
                    }
                }
            };
            machine.apply(slot, chosen);
            self.last_applied = Some(e.log_id);
            out.push(());
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder {
            machine: self.machine.clone(),
            log: self.log.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<Sid>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<Sid>> {
        let Some(last) = meta.last_log_id else {
            return Ok(()); // an empty snapshot: nothing applied yet
        };
        let slot = last.index + 2;
        // Staged off the async runtime, part by part; before the last
        // part (whose staging makes the node restart), the log is cut at
        // the snapshot and its metadata kept: once the node restarts
        // from the snapshot, its applied slot is known by this log id.
        let (machine, log, meta_owned) = (self.machine.clone(), self.log.clone(), meta.clone());
        let staged = tokio::task::spawn_blocking(move || -> Result<Received, String> {
            let data = snapshot.into_inner();
            let parts = split_parts(&data)?;
            let mut received = Received::Stored;
            for (seq, part) in parts.iter().enumerate() {
                let last_part = seq + 1 == parts.len();
                if last_part {
                    log.install_point(&meta_owned, last)?;
                }
                received = lock(&machine).receive_snapshot(slot, seq as u64, part, last_part)?;
            }
            Ok(received)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match staged {
            Ok(Received::Installed) => {
                self.last_applied = Some(last);
                self.membership = meta.last_membership.clone();
                Ok(())
            }
            // The node restarts to install it; this raft instance stops.
            Ok(Received::Restart) => Err(snapshot_err("restarting to install the snapshot")),
            Ok(Received::Stored) => Err(snapshot_err("a snapshot without parts")),
            Err(e) => {
                // openraft stops on a storage error: so does the node,
                // rather than run on without replication.
                let e = format!("cannot install a snapshot: {e}");
                lock(&self.machine).failed(&e);
                Err(snapshot_err(e))
            }
        }
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Types>>, StorageError<Sid>> {
        // Built afresh from the current checkpoint (at or after the last
        // one built): the data is the node's, not kept twice.
        let builder = self.get_snapshot_builder().await;
        match builder.build(Duration::ZERO).await {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                tracing::debug!(error = %e, "no snapshot to offer");
                Ok(None)
            }
        }
    }
}

/// A raft RPC or its reply, as carried in [`Message::Raft`].
#[derive(Serialize, Deserialize)]
enum Rpc {
    Append(u64, AppendEntriesRequest<Types>),
    Vote(u64, VoteRequest<Sid>),
    Snapshot(u64, InstallSnapshotRequest<Types>),
    AppendReply(u64, Result<AppendEntriesResponse<Sid>, String>),
    VoteReply(u64, Result<VoteResponse<Sid>, String>),
    SnapshotReply(u64, Result<InstallSnapshotResponse<Sid>, String>),
}

enum Reply {
    Append(Result<AppendEntriesResponse<Sid>, String>),
    Vote(Result<VoteResponse<Sid>, String>),
    Snapshot(Result<InstallSnapshotResponse<Sid>, String>),
}

/// Requests waiting for their replies, by id.
type Waiting = Arc<Mutex<HashMap<u64, tokio::sync::oneshot::Sender<Reply>>>>;

/// The network side: sends RPCs over a [`Transport`] and matches replies.
#[derive(Clone)]
pub struct Network {
    me: NodeId,
    transport: Arc<dyn Transport>,
    waiting: Waiting,
    next: Arc<AtomicU64>,
    /// How long to wait before trying an unreachable peer again.
    retry: Duration,
    /// The log's append counter.
    appended: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Network {
    fn send(&self, to: NodeId, rpc: &Rpc) {
        if let Ok(bytes) = postcard::to_allocvec(rpc) {
            self.transport.send(Envelope {
                from: self.me,
                to,
                msg: Message::Raft(bytes),
            });
        }
    }

    async fn call(
        &self,
        to: NodeId,
        make: impl FnOnce(u64) -> Rpc,
        ttl: Duration,
    ) -> Option<Reply> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.waiting).insert(id, tx);
        // Forgets the request however the wait ends (also when the caller
        // drops it): a late reply then finds nobody.
        let _waiting = Forget {
            waiting: &self.waiting,
            id,
        };
        self.send(to, &make(id));
        tokio::time::timeout(ttl, rx)
            .await
            .ok()
            .and_then(Result::ok)
    }
}

/// Removes a request from [`Network::waiting`] when dropped.
struct Forget<'a> {
    waiting: &'a Waiting,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.waiting).remove(&self.id);
    }
}

/// The error of a heartbeat that gave way to new entries (see
/// [`Connection`]); openraft logs it, and `mako` filters it out of its
/// log ([`is_superseded_heartbeat`]).
pub const SUPERSEDED_HEARTBEAT: &str =
    "heartbeat superseded by new entries (its reply is not waited for)";

/// True for a log line of openraft's that only reports a heartbeat that
/// gave way to new entries: a `mako` process leaves these out of its log
/// (one per follower and commit under load).
pub fn is_superseded_heartbeat(text: &str) -> bool {
    text.contains(SUPERSEDED_HEARTBEAT)
}

#[derive(Debug)]
struct Failed(String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

/// One connection (to one peer).
///
/// openraft 0.9 keeps one AppendEntries in flight per follower, and
/// sends a heartbeat carrying the new commit index as soon as an entry is
/// committed. New entries, appended a moment later by the commits that
/// waited for it, would wait for that heartbeat's round trip before
/// going out: a commit would take two round trips. So a heartbeat in
/// flight gives way to entries appended after it was sent: its wait ends
/// with a network error, which openraft takes for a lost heartbeat (it
/// logs it and goes on; a heartbeat carries no entries, so nothing is
/// resent or counted), and the entries go next. The heartbeat itself is
/// still delivered, and so is the follower's answer to the entries, which
/// tells the leader the same and more. A leader with nothing new to send
/// waits for its heartbeats' answers as before (they keep its lease).
pub struct Connection {
    net: Network,
    to: NodeId,
}

impl RaftNetworkFactory<Types> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: Sid, _node: &EmptyNode) -> Connection {
        Connection {
            net: self.clone(),
            to: target as NodeId,
        }
    }
}

fn unreachable<E: std::error::Error>(what: &str) -> RPCError<Sid, EmptyNode, E> {
    RPCError::Unreachable(Unreachable::new(&Failed(what.to_string())))
}

impl RaftNetwork<Types> for Connection {
    /// A peer that did not answer is tried again after a heartbeat
    /// interval, not openraft's default half second: a follower that has
    /// just restarted (to install a snapshot, say) must hear from the
    /// leader before its election timer runs out, or it stands and
    /// deposes the leader (openraft 0.9 has no PreVote).
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(self.net.retry))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Types>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<Sid>, RPCError<Sid, EmptyNode, RaftError<Sid>>> {
        let heartbeat = rpc.entries.is_empty();
        // Subscribed before the request goes: an append from then on ends
        // the wait for a heartbeat's reply.
        let mut appended = self.net.appended.subscribe();
        let call = self
            .net
            .call(self.to, |id| Rpc::Append(id, rpc), option.hard_ttl());
        let reply = if heartbeat {
            tokio::select! {
                reply = call => reply,
                Ok(()) = appended.changed() => {
                    let why = Failed(SUPERSEDED_HEARTBEAT.into());
                    return Err(RPCError::Network(NetworkError::new(&why)));
                }
            }
        } else {
            call.await
        };
        match reply {
            Some(Reply::Append(Ok(r))) => Ok(r),
            Some(Reply::Append(Err(e))) => Err(RPCError::Network(NetworkError::new(&Failed(e)))),
            _ => Err(unreachable("no reply to AppendEntries")),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Types>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<Sid>,
        RPCError<Sid, EmptyNode, RaftError<Sid, InstallSnapshotError>>,
    > {
        match self
            .net
            .call(self.to, |id| Rpc::Snapshot(id, rpc), option.hard_ttl())
            .await
        {
            Some(Reply::Snapshot(Ok(r))) => Ok(r),
            Some(Reply::Snapshot(Err(e))) => Err(RPCError::Network(NetworkError::new(&Failed(e)))),
            _ => Err(unreachable("no reply to InstallSnapshot")),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<Sid>,
        option: RPCOption,
    ) -> Result<VoteResponse<Sid>, RPCError<Sid, EmptyNode, RaftError<Sid>>> {
        match self
            .net
            .call(self.to, |id| Rpc::Vote(id, rpc), option.hard_ttl())
            .await
        {
            Some(Reply::Vote(Ok(r))) => Ok(r),
            Some(Reply::Vote(Err(e))) => Err(RPCError::Network(NetworkError::new(&Failed(e)))),
            _ => Err(unreachable("no reply to Vote")),
        }
    }
}

/// Timing of a raft stream.
#[derive(Clone, Debug)]
pub struct RaftTiming {
    /// openraft's heartbeat interval (also its replication RPC timeout:
    /// keep it above the round trip plus a follower's sync).
    pub heartbeat: Duration,
    /// The election timeout (randomized up to twice this).
    pub election: Duration,
    /// A leader that has not heard from a majority for this long stops
    /// serving.
    pub lease: Duration,
    /// A snapshot is built every this many entries, and as many entries
    /// are kept behind it for lagging followers.
    pub snapshot_every: u64,
    /// Whether this stream stands for election on its own when it stops
    /// hearing a leader (see [`RaftStream::set_candidacy`]).
    pub candidacy: bool,
}

/// A running raft stream.
pub struct RaftStream<T> {
    raft: openraft::Raft<Types>,
    net: Network,
    pending: Pending<T>,
    machine: Arc<Mutex<Box<dyn Machine<T>>>>,
    me: NodeId,
    incarnation: u64,
    next_seq: AtomicU64,
    status: Arc<Mutex<Status>>,
    runtime: tokio::runtime::Handle,
    /// Set by `stop`: openraft shutting down from now on is expected.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl<T: Send + 'static> RaftStream<T> {
    /// Starts a stream on `runtime`. `applied`: every slot below it is
    /// applied and durable in the machine. `initialize`: this node sets up
    /// the group's first membership (the preferred leader, on a new
    /// directory; doing it again is harmless). `learners` are added to
    /// the membership by whichever node leads, once it serves.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        runtime: &tokio::runtime::Handle,
        me: NodeId,
        voters: &[NodeId],
        learners: &[NodeId],
        disk: Arc<dyn RaftDisk>,
        machine: Box<dyn Machine<T>>,
        transport: Arc<dyn Transport>,
        timing: RaftTiming,
        applied: Slot,
        initialize: bool,
    ) -> Result<Arc<RaftStream<T>>, String> {
        let log = LogStore::load(disk)?;
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let pending: Pending<T> = Arc::new(Mutex::new(HashMap::new()));
        let machine = Arc::new(Mutex::new(machine));
        // Slots below `applied` are in the machine; openraft re-applies
        // what lies above once a leader commits it.
        let last_applied = applied.checked_sub(2).and_then(|i| log.log_id_at(i));
        let membership =
            last_applied.map_or_else(StoredMembership::default, |l| log.membership_at(l.index));
        let sm = StateMachine {
            machine: machine.clone(),
            pending: pending.clone(),
            me: u64::from(me),
            incarnation,
            last_applied,
            membership,
            log: log.clone(),
        };
        let net = Network {
            me,
            transport,
            waiting: Arc::new(Mutex::new(HashMap::new())),
            next: Arc::new(AtomicU64::new(1)),
            retry: timing.heartbeat,
            appended: log.appended.clone(),
        };
        let election_ms = timing.election.as_millis() as u64;
        let config = openraft::Config {
            cluster_name: "mako-stream".into(),
            heartbeat_interval: timing.heartbeat.as_millis() as u64,
            election_timeout_min: election_ms,
            election_timeout_max: election_ms * 2,
            max_payload_entries: 1024,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(timing.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: timing.snapshot_every,
            replication_lag_threshold: timing.snapshot_every.saturating_mul(2).max(1),
            // While a chunk of a snapshot is on its way, the follower hears
            // nothing else from the leader: a chunk that takes longer
            // than an election timeout (a follower that is down, say)
            // must not keep it from heartbeats that long.
            install_snapshot_timeout: election_ms,
            snapshot_max_chunk_size: 1 << 20,
            enable_elect: timing.candidacy,
            ..Default::default()
        }
        .validate()
        .map_err(|e| format!("raft configuration: {e}"))?;
        let raft = runtime
            .block_on(openraft::Raft::new(
                u64::from(me),
                Arc::new(config),
                net.clone(),
                log,
                sm,
            ))
            .map_err(|e| format!("cannot start raft: {e}"))?;
        if initialize {
            let members: BTreeMap<Sid, EmptyNode> = voters
                .iter()
                .map(|&v| (u64::from(v), EmptyNode {}))
                .collect();
            // Already initialized (a restart) is fine.
            let _ = runtime.block_on(raft.initialize(members));
        }
        let status = Arc::new(Mutex::new(Status::default()));
        let stream = Arc::new(RaftStream {
            raft: raft.clone(),
            net,
            pending: pending.clone(),
            machine: machine.clone(),
            me,
            incarnation,
            next_seq: AtomicU64::new(1),
            status: status.clone(),
            runtime: runtime.clone(),
            stopping: Arc::default(),
        });
        let stopping = stream.stopping.clone();
        // Follow openraft's metrics: the stream's status.
        let mut metrics = raft.metrics();
        let lease = timing.lease;
        let learners: Vec<Sid> = learners.iter().map(|&l| u64::from(l)).collect();
        let adder = raft.clone();
        runtime.spawn(async move {
            let mut led = false;
            let mut last = Status::default();
            // The learners this leadership has asked to add.
            let mut asked = false;
            loop {
                {
                    let m = metrics.borrow();
                    let leads = m.state == ServerState::Leader;
                    let missing: Vec<Sid> = learners
                        .iter()
                        .copied()
                        .filter(|l| !m.membership_config.nodes().any(|(n, _)| n == l))
                        .collect();
                    if !leads {
                        asked = false;
                    } else if !asked && !missing.is_empty() && last.serving {
                        asked = true;
                        let raft = adder.clone();
                        tokio::spawn(async move {
                            for l in missing {
                                if let Err(e) = raft.add_learner(l, EmptyNode {}, false).await {
                                    tracing::warn!(learner = l, error = %e, "cannot add a learner");
                                }
                            }
                        });
                    }
                }
                let st = {
                    let m = metrics.borrow_and_update();
                    if m.state == ServerState::Shutdown {
                        if !stopping.load(Ordering::Acquire) {
                            // openraft stops on a storage error: the node
                            // must not run on without replication.
                            lock(&machine).failed("openraft stopped (see the errors above)");
                        }
                        return; // stopped: not deposed
                    }
                    let leader = m.state == ServerState::Leader;
                    led |= leader;
                    let applied_this_term = m
                        .last_applied
                        .is_some_and(|l| l.leader_id.term == m.current_term);
                    let quorum = m
                        .millis_since_quorum_ack
                        .is_some_and(|ms| u128::from(ms) < lease.as_millis());
                    let until = m
                        .millis_since_quorum_ack
                        .filter(|_| leader && applied_this_term)
                        .and_then(|ms| {
                            (std::time::Instant::now() + lease)
                                .checked_sub(Duration::from_millis(ms))
                        });
                    lock(&machine).lease(until);
                    Status {
                        leader: m.current_leader.map(|l| l as NodeId),
                        serving: leader && applied_this_term && quorum,
                        ballot: Ballot {
                            number: m.current_term,
                            node: m.current_leader.unwrap_or(0) as NodeId,
                        },
                        chosen: m.last_applied.map_or(1, |l| l.index + 2),
                        deposed: led && !leader,
                    }
                };
                // Not (or no longer) the leader, or a leader cut off from
                // a majority for several leases (as the Paxos stream):
                // its proposals are given up.
                let isolated = metrics.borrow().millis_since_quorum_ack.is_some_and(|ms| {
                    u128::from(ms) > (lease * crate::stream::GIVE_UP_LEASES).as_millis()
                });
                if (st.leader != Some(me) || isolated) && !lock(&pending).is_empty() {
                    let lost: Vec<T> = lock(&pending).drain().map(|(_, t)| t).collect();
                    let mut mc = lock(&machine);
                    for t in lost {
                        mc.lost(t, NotLeader::Unknown);
                    }
                }
                if st != last {
                    *lock(&status) = st.clone();
                    lock(&machine).status(&st);
                    last = st;
                }
                // Re-evaluate at least every 50 ms (the quorum age moves
                // without a change being published).
                let _ = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
                if metrics.has_changed().is_err() {
                    return; // raft stopped
                }
            }
        });
        Ok(stream)
    }

    /// Proposes a batch; `token` comes back through the machine.
    pub fn propose(&self, bytes: Vec<u8>, token: T) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(seq, token);
        let batch = Batch {
            origin: u64::from(self.me),
            incarnation: self.incarnation,
            seq,
            bytes,
        };
        let (raft, pending, machine) = (
            self.raft.clone(),
            self.pending.clone(),
            self.machine.clone(),
        );
        self.runtime.spawn(async move {
            if let Err(e) = raft.client_write(batch).await {
                // Not the leader, or stopped: the batch will not be
                // applied as this node's own.
                let token = lock(&pending).remove(&seq);
                if let Some(t) = token {
                    tracing::warn!(error = %e, "a batch was not replicated");
                    lock(&machine).lost(t, NotLeader::Unknown);
                }
            }
        });
    }

    /// The current status.
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// Whether this stream stands for election when it stops hearing a
    /// leader (as [`crate::paxos::Replica::set_candidacy`]; openraft 0.9
    /// has no way to step down, so a leader stays one while it is).
    pub fn set_candidacy(&self, on: bool) {
        self.raft.runtime_config().elect(on);
    }

    /// Whether this stream's leader sends heartbeats. A leader that stops
    /// lets its followers' leases run out, so that they elect another
    /// (openraft 0.9 has no way to step down).
    pub fn set_heartbeat(&self, on: bool) {
        self.raft.runtime_config().heartbeat(on);
    }

    /// Where the transport delivers messages for this stream.
    pub fn deliver(self: &Arc<Self>) -> Deliver {
        // Weak: whoever holds the transport's callbacks must not keep the
        // stream (and its machine) alive once the node has closed.
        let me = Arc::downgrade(self);
        Arc::new(move |from, msg| {
            let Message::Raft(bytes) = msg else {
                return;
            };
            let Some(me) = me.upgrade() else {
                return;
            };
            let Ok(rpc) = postcard::from_bytes::<Rpc>(&bytes) else {
                tracing::warn!(from, "undecodable raft message dropped");
                return;
            };
            match rpc {
                Rpc::AppendReply(id, r) => me.complete(id, Reply::Append(r)),
                Rpc::VoteReply(id, r) => me.complete(id, Reply::Vote(r)),
                Rpc::SnapshotReply(id, r) => me.complete(id, Reply::Snapshot(r)),
                Rpc::Snapshot(id, req) => {
                    let (raft, net) = (me.raft.clone(), me.net.clone());
                    me.runtime.spawn(async move {
                        let r = raft.install_snapshot(req).await.map_err(|e| e.to_string());
                        net.send(from, &Rpc::SnapshotReply(id, r));
                    });
                }
                Rpc::Append(id, req) => {
                    // As a Paxos replica does (`Driver::check_values`): a
                    // value this node's machine could not apply is never
                    // stored or acknowledged; the request is dropped, and
                    // the leader sends it again.
                    let bad = {
                        let machine = lock(&me.machine);
                        req.entries.iter().find_map(|e| match &e.payload {
                            EntryPayload::Normal(b) => machine.check(&b.bytes).err(),
                            _ => None,
                        })
                    };
                    if let Some(why) = bad {
                        tracing::warn!(from, error = %why, "raft entries this node cannot apply dropped");
                        return;
                    }
                    let (raft, net) = (me.raft.clone(), me.net.clone());
                    me.runtime.spawn(async move {
                        let r = raft.append_entries(req).await.map_err(|e| e.to_string());
                        net.send(from, &Rpc::AppendReply(id, r));
                    });
                }
                Rpc::Vote(id, req) => {
                    let (raft, net) = (me.raft.clone(), me.net.clone());
                    me.runtime.spawn(async move {
                        let r = raft.vote(req).await.map_err(|e| e.to_string());
                        net.send(from, &Rpc::VoteReply(id, r));
                    });
                }
            }
        })
    }

    fn complete(&self, id: u64, reply: Reply) {
        if let Some(tx) = lock(&self.net.waiting).remove(&id) {
            let _ = tx.send(reply);
        }
    }

    /// Stops openraft's tasks.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let raft = self.raft.clone();
        let _ = self.runtime.block_on(raft.shutdown());
    }
}
