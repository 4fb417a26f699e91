//! `Txn`: an interactive transaction, coordinated from the session's node.
//!
//! Execution (Silo-style OCC): reads go to the shard owning the key and
//! record what they saw (version, or VC for replicated keys); scans record
//! every record in the covered range so phantoms can be detected; writes are
//! buffered and a transaction reads its own writes.
//!
//! Commit (Mako §4.2): a transaction touching one shard certifies with one
//! call (`commit_local`). Otherwise a [`Coordinator`] runs the four rounds
//! among the participants, each round to all of them at once: **Lock** the write set on every shard it writes
//! (no-wait), **GetClock** on each of them, **Validate** the read set on every
//! shard it read, **Install** the writes tagged with the VC, releasing the
//! locks. The VC is the element-wise max of the GetClock replies and of the
//! VCs of every version read. Any failed lock or validation aborts with a
//! retryable serialization failure, and every lock taken is released. Finally
//! the commit waits at the durability gate (VC ≤ watermark, Mako §4.3) before
//! it returns.
//!
//! Replicated keys (the catalog; tables declared replicated) have a copy on
//! every shard. Writes go to all copies in this transaction, so a replicated
//! write makes every shard a participant. Reads use one copy, the
//! transaction's *home* shard (the first shard it touched), and are validated
//! on any one participant by comparing VCs, which are equal on all copies.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kv::{ClockBuilder, Error, ErrorKind, ReadResult, Result, ShardId, VectorClock};

use crate::client::{
    KeyRange, LocalCommit, PointCheck, ScanCheck, ScanResult, Seen, TxnId, Validation, Write,
};
use crate::coord::{Coordinator, Participant, Ready, Reply, Request, Round};
use crate::db::Db;

/// Where a key lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On the one shard chosen by this partition hash.
    Partitioned(u64),
    /// A copy on every shard.
    Replicated,
}

/// The bytes a buffered write holds: its key, value and a map entry's own
/// cost.
fn buffered_bytes(key_len: usize, w: &Buffered) -> usize {
    /// A map entry's own cost beyond its key and value.
    const ENTRY: usize = 96;
    ENTRY + key_len + w.value.as_ref().map_or(0, |v| v.len())
}

/// The bytes one undo record holds.
fn undo_entry_bytes(key: &[u8], old: &Option<Buffered>) -> usize {
    match old {
        Some(w) => buffered_bytes(key.len(), w),
        None => buffered_bytes(
            key.len(),
            &Buffered {
                value: None,
                placement: Placement::Replicated,
            },
        ),
    }
}

/// Which shards a scan must visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanPlacement {
    /// The range lies within one partition (its first key column is fixed).
    Partitioned(u64),
    /// The range spans partitions: visit every shard and merge in key order.
    AllShards,
    /// A range of a replicated table: any one copy.
    Replicated,
}

/// A key and its present value, as scans return them.
pub type Entry = (Vec<u8>, Arc<[u8]>);

/// What a successful commit reports.
#[derive(Clone, Debug)]
pub struct CommitInfo {
    /// The transaction id.
    pub txn: TxnId,
    /// The transaction's vector clock.
    pub vc: VectorClock,
    /// How many shards took part in certification.
    pub participants: usize,
}

/// A transaction certified and installed (committed), not yet known to be
/// durable: Mako §4.3 acknowledges it only once VC ≤ watermark.
pub struct Installed {
    db: Arc<Db>,
    info: CommitInfo,
}

impl Installed {
    /// Blocks until the transaction is durable (may be acknowledged), or
    /// fails when that can no longer happen.
    pub fn wait(self) -> Result<CommitInfo> {
        self.db
            .gate()
            .wait_durable(&self.info.vc)
            .map_err(unknown)?;
        Ok(self.info)
    }

    /// [`Installed::wait`] for an async task: a future that does not block
    /// its thread.
    pub fn durable(self) -> Durable {
        Durable(Some(self))
    }
}

/// The transaction is committed by now, so no failure to make it durable
/// may look retryable: a retry would apply it twice.
fn unknown(e: Error) -> Error {
    if e.is_retryable() {
        Error::new(
            ErrorKind::OutcomeUnknown,
            format!("commit outcome unknown: {}", e.message),
        )
    } else {
        e
    }
}

/// Resolves once an installed transaction is durable; see
/// [`Installed::durable`]. A wake-up it misses would leave it pending: a
/// caller that cannot rule that out polls it again now and then.
pub struct Durable(Option<Installed>);

impl std::future::Future for Durable {
    type Output = Result<CommitInfo>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let Some(i) = self.0.as_ref() else {
            return std::task::Poll::Ready(Err(Error::internal(
                "a commit's durability polled after it resolved",
            )));
        };
        match i.db.gate().poll_durable(&i.info.vc, cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(r) => {
                let i = self.0.take().expect("checked above");
                std::task::Poll::Ready(r.map(|()| i.info).map_err(unknown))
            }
        }
    }
}

/// A buffered write.
#[derive(Clone, Debug)]
struct Buffered {
    value: Option<Arc<[u8]>>,
    placement: Placement,
}

/// An interactive transaction. Dropping it without committing rolls it back
/// (nothing was written anywhere yet).
pub struct Txn {
    /// The node's shards.
    db: Arc<Db>,
    /// This transaction's id.
    id: TxnId,
    /// The shard replicated reads go to; the first shard this transaction
    /// touched, so that single-partition transactions stay single-shard.
    home: Option<ShardId>,
    /// Point reads of partitioned keys, by shard.
    points: Vec<(ShardId, PointCheck)>,
    /// Point reads of replicated keys.
    replicated_points: Vec<PointCheck>,
    /// Range reads of partitioned keys, by shard.
    scans: Vec<(ShardId, ScanCheck)>,
    /// Range reads of replicated keys.
    replicated_scans: Vec<ScanCheck>,
    /// The write set, sorted by key.
    writes: BTreeMap<Vec<u8>, Buffered>,
    /// Approximate bytes the write set holds (keys, values, bookkeeping),
    /// for the server's bound on it.
    write_bytes: usize,
    /// Max of the VCs of every version read.
    read_vc: ClockBuilder,
    /// Reads of other replica groups' keys fetched ahead of their use
    /// ([`Txn::prefetch`]); a `get` takes its key's from here.
    prefetched: HashMap<Vec<u8>, ReadResult>,
    /// When the transaction began, in microseconds since the Unix epoch
    /// (SQL's `now()`).
    started_micros: i64,
    /// What each write replaced (`None`: the key had no buffered write),
    /// oldest first, for [`Txn::rollback_to`]; recorded only while a
    /// savepoint is open.
    undo: Vec<(Vec<u8>, Option<Buffered>)>,
    /// Approximate bytes `undo` holds (part of [`Txn::write_set_bytes`]:
    /// rewriting one key under a savepoint must not grow memory unbounded).
    undo_bytes: usize,
    /// How many savepoints are open.
    savepoints: usize,
}

/// A point in a transaction's write set that it can roll back to
/// (SQL's `SAVEPOINT`); see [`Txn::savepoint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Savepoint(usize);

impl Txn {
    pub(crate) fn new(db: Arc<Db>, id: TxnId) -> Self {
        let shards = db.shard_count();
        Txn {
            db,
            id,
            home: None,
            points: Vec::new(),
            replicated_points: Vec::new(),
            scans: Vec::new(),
            replicated_scans: Vec::new(),
            writes: BTreeMap::new(),
            write_bytes: 0,
            read_vc: ClockBuilder::new(shards),
            prefetched: HashMap::new(),
            started_micros: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64),
            undo: Vec::new(),
            undo_bytes: 0,
            savepoints: 0,
        }
    }

    /// The first shard this transaction touched, if any: where a new row
    /// with no natural placement (no primary key) best goes, so that the
    /// transaction stays on as few shards as it can.
    pub fn home_shard(&self) -> Option<ShardId> {
        self.home
    }

    /// The node's database this transaction runs on.
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// When the transaction began, in microseconds since the Unix epoch
    /// (the wall clock of the node that began it).
    pub fn started_micros(&self) -> i64 {
        self.started_micros
    }

    /// This transaction's id.
    pub fn id(&self) -> TxnId {
        self.id
    }

    /// True when the transaction has buffered writes.
    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Approximate bytes of memory the buffered writes hold.
    pub fn write_set_bytes(&self) -> usize {
        self.write_bytes + self.undo_bytes
    }

    /// Buffers `w` at `key`, keeping [`Txn::write_set_bytes`] current.
    fn buffer(&mut self, key: Vec<u8>, w: Buffered) {
        self.write_bytes += buffered_bytes(key.len(), &w);
        let undo_key = (self.savepoints > 0).then(|| key.clone());
        let key_len = key.len();
        let old = self.writes.insert(key, w);
        if let Some(old) = &old {
            self.write_bytes = self
                .write_bytes
                .saturating_sub(buffered_bytes(key_len, old));
        }
        if let Some(key) = undo_key {
            self.undo_bytes += undo_entry_bytes(&key, &old);
            self.undo.push((key, old));
        }
    }

    /// Opens a savepoint: [`Txn::rollback_to`] it undoes every write
    /// buffered after this call. Reads stay in the read set (what was
    /// read was read, as in PostgreSQL). Each savepoint is closed by one
    /// [`Txn::release`], whether or not it was rolled back to.
    pub fn savepoint(&mut self) -> Savepoint {
        self.savepoints += 1;
        Savepoint(self.undo.len())
    }

    /// Undoes the writes buffered since `sp` was opened; `sp` and the
    /// savepoints opened before it stay open.
    pub fn rollback_to(&mut self, sp: Savepoint) {
        while self.undo.len() > sp.0 {
            let Some((key, old)) = self.undo.pop() else {
                break;
            };
            self.undo_bytes = self.undo_bytes.saturating_sub(undo_entry_bytes(&key, &old));
            if let Some(now) = self.writes.get(&key) {
                self.write_bytes = self
                    .write_bytes
                    .saturating_sub(buffered_bytes(key.len(), now));
            }
            match old {
                Some(w) => {
                    self.write_bytes += buffered_bytes(key.len(), &w);
                    self.writes.insert(key, w);
                }
                None => {
                    self.writes.remove(&key);
                }
            }
        }
    }

    /// Closes one savepoint (its writes stay). Once none is open the undo
    /// records go.
    pub fn release(&mut self) {
        self.savepoints = self.savepoints.saturating_sub(1);
        if self.savepoints == 0 {
            self.undo = Vec::new();
            self.undo_bytes = 0;
        }
    }

    /// The shard that holds a partitioned key, or the home shard for a
    /// replicated one.
    fn shard_of(&mut self, placement: Placement) -> ShardId {
        match placement {
            Placement::Partitioned(h) => {
                let s = self.db.shard_for(h);
                self.home.get_or_insert(s);
                s
            }
            Placement::Replicated => self.home.unwrap_or_else(|| self.db.first_local()),
        }
    }

    fn observe_vc(&mut self, vc: &Option<VectorClock>) {
        if let Some(vc) = vc {
            self.read_vc.merge(vc);
        }
    }

    /// Reads `key`, seeing this transaction's own writes.
    pub fn get(&mut self, key: &[u8], placement: Placement) -> Result<Option<Arc<[u8]>>> {
        self.read_point(key, placement, false)
    }

    /// Whether `key` has a value, seeing this transaction's own writes.
    /// When it has, validation only requires it to still have one at
    /// commit ([`Seen::Present`]): concurrent updates of its value do not
    /// conflict with this read, its deletion does. When it has not, the
    /// absence is validated as a [`Txn::get`]'s would be.
    pub fn exists(&mut self, key: &[u8], placement: Placement) -> Result<bool> {
        Ok(self.read_point(key, placement, true)?.is_some())
    }

    fn read_point(
        &mut self,
        key: &[u8],
        placement: Placement,
        presence: bool,
    ) -> Result<Option<Arc<[u8]>>> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.value.clone());
        }
        let shard = self.shard_of(placement);
        let read = match self.prefetched.remove(key) {
            Some(r) => r,
            None => self.db.client(shard).read(key)?,
        };
        self.observe_vc(&read.vc);
        let replicated = placement == Placement::Replicated;
        let check = PointCheck {
            key: key.to_vec(),
            seen: if presence && read.value.is_some() {
                Seen::Present
            } else {
                Seen::of(&read, replicated)
            },
        };
        if replicated {
            self.replicated_points.push(check);
        } else {
            self.points.push((shard, check));
        }
        Ok(read.value)
    }

    /// Fetches the keys that other replica groups hold among `keys`, one
    /// call per shard and the shards in parallel, for the [`Txn::get`]s
    /// that will follow (a multi-row INSERT checks each row's key): a
    /// read across the network costs a round trip, and one per row would
    /// bound a statement by the latency. Nothing enters the read set
    /// until `get` takes the read (its version is what validation checks,
    /// as if read then). Keys of this node's shards are left to `get`.
    pub fn prefetch(&mut self, keys: &[(Vec<u8>, Placement)]) -> Result<()> {
        let mut by_shard: BTreeMap<ShardId, Vec<Vec<u8>>> = BTreeMap::new();
        for (key, placement) in keys {
            let Placement::Partitioned(h) = *placement else {
                continue; // replicated keys are read on a local copy
            };
            let shard = self.db.shard_for(h);
            if self.db.is_local(shard)
                || self.writes.contains_key(key)
                || self.prefetched.contains_key(key)
            {
                continue;
            }
            by_shard.entry(shard).or_default().push(key.clone());
        }
        if by_shard.is_empty() {
            return Ok(());
        }
        let db = &self.db;
        type Fetched = Result<Vec<(Vec<u8>, ReadResult)>>;
        let results: Vec<Fetched> = std::thread::scope(|scope| {
            let handles: Vec<_> = by_shard
                .into_iter()
                .map(|(shard, keys)| {
                    scope.spawn(move || {
                        let reads = db.client(shard).read_many(&keys)?;
                        Ok(keys.into_iter().zip(reads).collect())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::internal("a prefetch thread panicked")))
                })
                .collect()
        });
        for r in results {
            self.prefetched.extend(r?);
        }
        Ok(())
    }

    /// Returns the present rows in `range` in key order, seeing this
    /// transaction's own writes, at most `limit` of them.
    pub fn scan(
        &mut self,
        range: &KeyRange,
        placement: ScanPlacement,
        limit: Option<usize>,
    ) -> Result<Vec<Entry>> {
        self.scan_ordered(range, placement, limit, false)
    }

    /// Like [`Txn::scan`], in descending key order when `reverse`: the
    /// limit then keeps the largest keys.
    pub fn scan_ordered(
        &mut self,
        range: &KeyRange,
        placement: ScanPlacement,
        limit: Option<usize>,
        reverse: bool,
    ) -> Result<Vec<Entry>> {
        let shards: Vec<ShardId> = match placement {
            ScanPlacement::Partitioned(h) => vec![self.shard_of(Placement::Partitioned(h))],
            ScanPlacement::AllShards => (0..self.db.shard_count()).collect(),
            ScanPlacement::Replicated => vec![self.shard_of(Placement::Replicated)],
        };
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let replicated = placement == ScanPlacement::Replicated;
        let own_writes: Vec<(Vec<u8>, Buffered)> = self
            .writes
            .range::<Vec<u8>, _>((range.start.clone(), range.end.clone()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Own deletes could hide rows the limit counted; then read it all.
        let shard_limit = if own_writes.is_empty() { limit } else { None };

        // Several shards, some of them other groups': their scans go out
        // at once (each is a round trip), the results in shard order.
        let mut fetched: Vec<Option<Result<ScanResult>>> = Vec::new();
        if shards.len() > 1 && shards.iter().any(|&s| !self.db.is_local(s)) {
            let db = &self.db;
            fetched = std::thread::scope(|scope| {
                let handles: Vec<_> = shards
                    .iter()
                    .map(|&s| scope.spawn(move || db.client(s).scan(range, shard_limit, reverse)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        Some(
                            h.join()
                                .unwrap_or_else(|_| Err(Error::internal("a scan thread panicked"))),
                        )
                    })
                    .collect()
            });
        }
        let mut rows: Vec<Entry> = Vec::new();
        for (i, shard) in shards.into_iter().enumerate() {
            let result = match fetched.get_mut(i).and_then(Option::take) {
                Some(r) => r?,
                None => self.db.client(shard).scan(range, shard_limit, reverse)?,
            };
            let mut seen = Vec::with_capacity(result.records.len());
            for (key, read) in result.records {
                self.observe_vc(&read.vc);
                seen.push((key.clone(), Seen::of(&read, replicated)));
                if let Some(v) = read.value {
                    rows.push((key, v));
                }
            }
            let check = ScanCheck {
                range: result.covered.unwrap_or_else(|| range.clone()),
                seen,
            };
            if replicated {
                self.replicated_scans.push(check);
            } else {
                self.scans.push((shard, check));
            }
        }
        if placement == ScanPlacement::AllShards && self.db.shard_count() > 1 {
            rows.sort_by(|a, b| a.0.cmp(&b.0));
        }
        if reverse {
            // Records come back in key order from each shard; the caller
            // wants descending order.
            rows.sort_by(|a, b| b.0.cmp(&a.0));
        }
        if !own_writes.is_empty() {
            let mut merged: BTreeMap<Vec<u8>, Arc<[u8]>> = rows.into_iter().collect();
            for (k, w) in own_writes {
                match w.value {
                    Some(v) => merged.insert(k, v),
                    None => merged.remove(&k),
                };
            }
            rows = merged.into_iter().collect();
            if reverse {
                rows.reverse();
            }
        }
        if let Some(l) = limit {
            rows.truncate(l);
        }
        Ok(rows)
    }

    /// A mark in the read set, for [`Txn::partitioned_reads_since`].
    pub fn read_mark(&self) -> (usize, usize) {
        (self.points.len(), self.scans.len())
    }

    /// Keys of partitioned records read (by point reads or inside scanned
    /// ranges) since `mark`. `SELECT ... FOR UPDATE` rewrites them so that
    /// they are locked and certified as writes at commit.
    pub fn partitioned_reads_since(&self, mark: (usize, usize)) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self.points[mark.0.min(self.points.len())..]
            .iter()
            .map(|(_, p)| p.key.clone())
            .collect();
        for (_, scan) in &self.scans[mark.1.min(self.scans.len())..] {
            keys.extend(scan.seen.iter().map(|(k, _)| k.clone()));
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Buffers a write of `value` at `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Arc<[u8]>, placement: Placement) {
        if let Placement::Partitioned(h) = placement {
            let s = self.db.shard_for(h);
            self.home.get_or_insert(s);
        }
        self.buffer(
            key,
            Buffered {
                value: Some(value),
                placement,
            },
        );
    }

    /// Buffers a deletion of `key`.
    pub fn delete(&mut self, key: Vec<u8>, placement: Placement) {
        if let Placement::Partitioned(h) = placement {
            let s = self.db.shard_for(h);
            self.home.get_or_insert(s);
        }
        self.buffer(
            key,
            Buffered {
                value: None,
                placement,
            },
        );
    }

    /// Abandons the transaction. Nothing was written, so nothing is undone.
    pub fn rollback(self) {}

    /// Certifies and installs the transaction (see the module docs), and
    /// returns once it is durable: acknowledged.
    pub fn commit(self) -> Result<CommitInfo> {
        self.commit_installed()?.wait()
    }

    /// Certifies and installs the transaction, without waiting for it to
    /// become durable: it is committed (later transactions see it), but
    /// may be acknowledged only once [`Installed::wait`] or
    /// [`Installed::durable`] says so.
    pub fn commit_installed(self) -> Result<Installed> {
        let db = self.db.clone();
        let result = self.certify().map(|info| Installed {
            db: db.clone(),
            info,
        });
        match &result {
            Ok(Installed { info, .. }) if info.participants > 1 => {
                db.stats.cross_shard_commits.fetch_add(1, Ordering::Relaxed)
            }
            Ok(_) => db
                .stats
                .single_shard_commits
                .fetch_add(1, Ordering::Relaxed),
            Err(e) if e.is_retryable() => db.stats.aborts.fetch_add(1, Ordering::Relaxed),
            Err(_) => 0,
        };
        result
    }

    /// The write set grouped by shard (replicated writes on every shard).
    fn writes_by_shard(&self) -> Vec<Vec<Write>> {
        let db = &self.db;
        let mut writes: Vec<Vec<Write>> = vec![Vec::new(); db.shard_count()];
        for (key, w) in &self.writes {
            let write = Write {
                key: key.clone(),
                value: w.value.clone(),
            };
            match w.placement {
                Placement::Partitioned(h) => writes[db.shard_for(h)].push(write),
                Placement::Replicated => {
                    for per_shard in writes.iter_mut() {
                        per_shard.push(write.clone());
                    }
                }
            }
        }
        writes
    }

    /// The read set grouped by the shard that validates it. Replicated reads
    /// are validated on one participant: the home shard if it takes part,
    /// else any that does, else the shard they were read from.
    fn reads_by_shard(&self, writes: &[Vec<Write>]) -> Vec<Validation> {
        let n = self.db.shard_count();
        let mut checks: Vec<Validation> = vec![Validation::default(); n];
        for (s, p) in &self.points {
            checks[*s].points.push(p.clone());
        }
        for (s, c) in &self.scans {
            checks[*s].scans.push(c.clone());
        }
        if !self.replicated_points.is_empty() || !self.replicated_scans.is_empty() {
            let current = involved(writes, &checks);
            let home = self.home.unwrap_or_else(|| self.db.first_local());
            let anchor = if current.is_empty() || current.contains(&home) {
                home
            } else {
                current[0]
            };
            checks[anchor]
                .points
                .extend(self.replicated_points.iter().cloned());
            checks[anchor]
                .scans
                .extend(self.replicated_scans.iter().cloned());
        }
        checks
    }

    /// Checks, without committing, that everything read so far is still
    /// current. A statement that fails with an ordinary error (say, a
    /// division by zero) may have computed it from a read that raced a
    /// concurrent commit (reads do not wait for locks); the session uses this
    /// to report such a failure as the serialization failure it really is.
    pub fn check_reads(&self) -> Result<()> {
        let none: Vec<Vec<Write>> = vec![Vec::new(); self.db.shard_count()];
        let checks = self.reads_by_shard(&none);
        for (s, c) in checks.iter().enumerate() {
            if !c.is_empty() {
                self.db.client(s).validate(self.id, c, &[])?;
            }
        }
        Ok(())
    }

    fn certify(self) -> Result<CommitInfo> {
        let db = &self.db;
        let writes = self.writes_by_shard();
        let checks = self.reads_by_shard(&writes);
        let participants = involved(&writes, &checks);
        let epoch = db.epoch();
        if let Some(remote) = db.remote_for(&participants) {
            let home = db.first_local();
            let coord =
                Coordinator::new(self.id, epoch, writes, checks, self.read_vc.clone(), |s| {
                    remote.participant(s)
                })
                .with_coordinator_clock(home, remote.participant(home));
            let vc = remote.commit(coord)?;
            db.stats.cross_group_commits.fetch_add(1, Ordering::Relaxed);
            return Ok(CommitInfo {
                txn: self.id,
                vc,
                participants: participants.len(),
            });
        }
        let vc = match participants.as_slice() {
            [] => self.read_vc.build(),
            [only] => db.client(*only).commit_local(LocalCommit {
                txn: self.id,
                writes: &writes[*only],
                validation: &checks[*only],
                read_vc: &self.read_vc.build(),
                epoch,
            })?,
            _ => {
                // In one process each shard answers for itself.
                let coord =
                    Coordinator::new(self.id, epoch, writes, checks, self.read_vc.clone(), |s| {
                        s as Participant
                    });
                InProcess { db, coord }.run()?
            }
        };
        Ok(CommitInfo {
            txn: self.id,
            vc,
            participants: participants.len(),
        })
    }
}

/// The shards on which a transaction writes or validates something.
fn involved(writes: &[Vec<Write>], checks: &[Validation]) -> Vec<ShardId> {
    (0..writes.len())
        .filter(|&s| !writes[s].is_empty() || !checks[s].is_empty())
        .collect()
}

/// Runs a [`Coordinator`] over in-process shards (participant `p` is
/// shard `p`): each request is a direct call, so every reply arrives, in
/// order. Dropped before the outcome (a participant call panicked, a bug),
/// it releases what the transaction may hold.
struct InProcess<'a> {
    db: &'a Db,
    coord: Coordinator,
}

impl InProcess<'_> {
    fn run(mut self) -> Result<VectorClock> {
        let mut ready = self.coord.start();
        loop {
            if let Some(outcome) = ready.outcome {
                return outcome;
            }
            if ready.requests.is_empty() {
                // Only an Install or a Release that failed can be awaited
                // now; a direct call that fails will fail again.
                return Err(Error::internal(format!(
                    "transaction {} was decided but a shard could not carry it out",
                    self.coord.txn()
                )));
            }
            let mut next = Ready::default();
            for r in ready.requests {
                let reply = self.call(&r);
                let step = self.coord.on_reply(r.to, r.round, reply);
                next.requests.extend(step.requests);
                next.outcome = next.outcome.or(step.outcome);
            }
            ready = next;
        }
    }

    /// Carries out `r` on its shards: all of them or, failing, none.
    fn call(&self, r: &Request) -> Result<Reply> {
        let (db, c) = (self.db, &self.coord);
        let txn = c.txn();
        match r.round {
            Round::Lock => {
                for (i, &s) in r.shards.iter().enumerate() {
                    if let Err(e) = db.client(s).lock(txn, c.writes(s)) {
                        for &done in &r.shards[..i] {
                            let _ = db.client(done).release(txn, c.writes(done));
                        }
                        return Err(e);
                    }
                }
                Ok(Reply::Done)
            }
            Round::GetClock => r
                .shards
                .iter()
                .map(|&s| Ok((s, db.client(s).get_clock(txn)?)))
                .collect::<Result<Vec<_>>>()
                .map(Reply::Clocks),
            Round::Validate => {
                for &s in &r.shards {
                    db.client(s).validate(txn, c.validation(s), c.writes(s))?;
                }
                Ok(Reply::Done)
            }
            Round::Install => {
                let vc = c
                    .vc()
                    .ok_or_else(|| Error::internal("Install before the commit's clock"))?;
                for &s in &r.shards {
                    db.client(s).install(txn, c.writes(s), vc, c.epoch())?;
                }
                Ok(Reply::Done)
            }
            Round::Release => {
                for &s in &r.shards {
                    db.client(s).release(txn, c.writes(s))?;
                }
                Ok(Reply::Done)
            }
        }
    }
}

impl Drop for InProcess<'_> {
    fn drop(&mut self) {
        if self.coord.is_done() {
            return;
        }
        let txn = self.coord.txn();
        for p in self.coord.holding().collect::<Vec<_>>() {
            let s = p as ShardId;
            let _ = self.db.client(s).release(txn, self.coord.writes(s));
        }
    }
}

/// The range of every key starting with `prefix`.
pub fn prefix_range(prefix: &[u8]) -> KeyRange {
    KeyRange {
        start: Bound::Included(prefix.to_vec()),
        end: kv::keycode::prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded),
    }
}
