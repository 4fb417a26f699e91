//! Snapshots of a replica's checkpointed state, for a replica that needs
//! stream entries every other replica has forgotten.
//!
//! The sender reads its `data` column family and the checkpoint's
//! metadata from one RocksDB snapshot (so they agree), in parts of about a
//! megabyte: part 0 holds the metadata (whose checkpoint position names
//! the stream slot the state is at), the others the rows. The receiver
//! stages the parts in the `staging` column family as they arrive, and
//! once the last is in, syncs and marks the snapshot complete. The next
//! [`open`](super::open) installs it, crash-safely: the marker stays until
//! the `data` column family, the clocks and the checkpoint position have
//! been replaced in full, so an interrupted install starts over. The node
//! then resumes its stream at the snapshot's slot.
//!
//! A part is a sequence of `[key length u32 LE][key][value length u32
//! LE][value]` records.

use std::sync::mpsc::{Receiver, sync_channel};

use rocksdb::{DB, IteratorMode, WriteBatch, WriteOptions};

use super::{
    CF_DATA, CF_LOG, CF_META, META_CHECKPOINT, META_CLOCK, META_LAST_TXN, META_REPLAY, META_SHARDS,
    META_STREAMS, Persist, SLOT_SHIFT, cf, io_error, read_u64,
};
use crate::error::{Error, ErrorKind, Result};
use crate::log::{Reader, corrupt};

/// Staged snapshot parts: `m` + a metadata key, `d` + a data key.
pub(super) const CF_STAGING: &str = "staging";

/// In `meta`: the slot of a completely staged snapshot, to install.
const META_SNAPSHOT: &[u8] = b"snapshot";

/// The metadata a snapshot carries (the rest is specific to the sender).
fn carried(key: &[u8]) -> bool {
    key == META_SHARDS
        || key == META_CHECKPOINT
        || key == META_LAST_TXN
        || key == META_REPLAY
        || key == META_STREAMS
        || key.starts_with(META_CLOCK)
}

fn put_record(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v);
}

fn records(part: &[u8]) -> Result<Vec<(&[u8], &[u8])>> {
    let mut r = Reader(part);
    let mut out = Vec::new();
    while !r.0.is_empty() {
        let k = r.bytes()?;
        let v = r.bytes()?;
        out.push((k, v));
    }
    Ok(out)
}

/// A snapshot being read, part by part, by a thread of its own (which
/// holds the RocksDB snapshot until the last part is taken or the reader
/// is dropped).
pub struct SnapshotReader {
    slot: u64,
    first: Option<Vec<u8>>,
    rx: Receiver<Result<Vec<u8>>>,
}

impl SnapshotReader {
    /// Every stream slot below this is in the snapshot.
    pub fn slot(&self) -> u64 {
        self.slot
    }

    /// The next part, or `None` after the last.
    pub fn next_part(&mut self) -> Result<Option<Vec<u8>>> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        match self.rx.recv() {
            Ok(part) => part.map(Some),
            Err(_) => Ok(None),
        }
    }
}

impl Persist {
    /// Starts reading a snapshot of the checkpointed state for stream 0,
    /// in parts of about `part_bytes`.
    pub fn snapshot(&self, part_bytes: usize) -> Result<SnapshotReader> {
        self.snapshot_of(0, part_bytes)
    }

    /// Starts reading a snapshot of the checkpointed state, in parts of
    /// about `part_bytes`, for a replica behind on stream `stream`: its
    /// slot is that stream's checkpoint position.
    pub fn snapshot_of(&self, stream: usize, part_bytes: usize) -> Result<SnapshotReader> {
        if self.replica_of.is_none() {
            return Err(Error::internal("snapshots are for replicas"));
        }
        let db = self.db.clone();
        let (tx, rx) = sync_channel::<Result<Vec<u8>>>(2);
        std::thread::Builder::new()
            .name("mako-snapshot".into())
            .spawn(move || {
                let snap = db.snapshot();
                let read = || -> Result<()> {
                    let mut meta = Vec::new();
                    for item in snap.iterator_cf(cf(&db, CF_META)?, IteratorMode::Start) {
                        let (k, v) = item.map_err(|e| io_error("cannot read a snapshot", e))?;
                        if carried(&k) {
                            put_record(&mut meta, &k, &v);
                        }
                    }
                    if tx.send(Ok(meta)).is_err() {
                        return Ok(());
                    }
                    let mut part = Vec::new();
                    for item in snap.iterator_cf(cf(&db, CF_DATA)?, IteratorMode::Start) {
                        let (k, v) = item.map_err(|e| io_error("cannot read a snapshot", e))?;
                        put_record(&mut part, &k, &v);
                        if part.len() >= part_bytes
                            && tx.send(Ok(std::mem::take(&mut part))).is_err()
                        {
                            return Ok(());
                        }
                    }
                    if !part.is_empty() {
                        let _ = tx.send(Ok(part));
                    }
                    Ok(())
                };
                if let Err(e) = read() {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start a snapshot: {e}")))?;
        let first = rx
            .recv()
            .map_err(|_| Error::internal("the snapshot reader stopped"))??;
        let mut slot = None;
        for (k, v) in records(&first)? {
            if k == META_CHECKPOINT && stream == 0 && slot.is_none() {
                let through = u64::from_le_bytes(
                    v.try_into()
                        .map_err(|_| corrupt("the checkpoint position is damaged"))?,
                );
                slot = Some((through >> SLOT_SHIFT).max(1));
            }
            if k == META_STREAMS {
                let at = v
                    .get(stream * 8..stream * 8 + 8)
                    .ok_or_else(|| corrupt(format!("no checkpoint position of stream {stream}")))?;
                slot = Some(u64::from_le_bytes(at.try_into().expect("8 bytes")).max(1));
            }
        }
        Ok(SnapshotReader {
            slot: slot.unwrap_or(1),
            first: Some(first),
            rx,
        })
    }

    /// Stores part `seq` of a snapshot being received (parts come in
    /// order; part 0 starts over). Not synced: [`Persist::snapshot_staged`]
    /// syncs.
    pub fn stage_snapshot(&self, seq: u64, part: &[u8]) -> Result<()> {
        let staging = cf(&self.db, CF_STAGING)?;
        let mut wb = WriteBatch::default();
        if seq == 0 {
            wb.delete_range_cf(staging, &b""[..], &b"\xff"[..]);
            for (k, v) in records(part)? {
                if !carried(k) {
                    continue; // nothing else of the sender's metadata
                }
                if k == META_SHARDS {
                    let n = u64::from_le_bytes(
                        v.try_into()
                            .map_err(|_| corrupt("a snapshot's shard count"))?,
                    );
                    if n != self.shards.len() as u64 {
                        return Err(Error::new(
                            ErrorKind::InvalidParameterValue,
                            format!(
                                "a snapshot of {n} shards cannot be installed on a node of {}",
                                self.shards.len()
                            ),
                        ));
                    }
                }
                wb.put_cf(staging, [b"m", k].concat(), v);
            }
        } else {
            for (k, v) in records(part)? {
                wb.put_cf(staging, [b"d", k].concat(), v);
            }
        }
        self.db
            .write(wb)
            .map_err(|e| io_error("cannot store a snapshot", e))
    }

    /// The snapshot of stream slot `slot` is staged in full: makes it
    /// durable and marks it for installing at the next open (the node
    /// restarts to install it).
    pub fn snapshot_staged(&self, slot: u64) -> Result<()> {
        self.snapshot_staged_of(0, slot)
    }

    /// [`Persist::snapshot_staged`] for a snapshot received on stream
    /// `stream`, whose slot is that stream's.
    pub fn snapshot_staged_of(&self, stream: usize, slot: u64) -> Result<()> {
        self.db
            .flush_wal(true)
            .map_err(|e| io_error("cannot store a snapshot", e))?;
        let mut wb = WriteBatch::default();
        let mut marker = slot.to_le_bytes().to_vec();
        marker.extend_from_slice(&(stream as u64).to_le_bytes());
        wb.put_cf(cf(&self.db, CF_META)?, META_SNAPSHOT, marker);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .write_opt(wb, &wo)
            .map_err(|e| io_error("cannot store a snapshot", e))
    }
}

/// At open: installs a completely staged snapshot if it is ahead of the
/// checkpoint (else drops it). Returns its slot if it was installed.
pub(super) fn install_staged(db: &DB) -> Result<Option<u64>> {
    let marker = db
        .get_cf(cf(db, CF_META)?, META_SNAPSHOT)
        .map_err(|e| io_error("cannot read metadata", e))?;
    let Some(marker) = marker else {
        return Ok(None);
    };
    let word = |i: usize| -> Result<u64> {
        let b = marker
            .get(i * 8..i * 8 + 8)
            .ok_or_else(|| corrupt("the snapshot marker is damaged"))?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let slot = word(0)?;
    let stream = if marker.len() > 8 {
        word(1)? as usize
    } else {
        0
    };
    let (data, meta, staging, log) = (
        cf(db, CF_DATA)?,
        cf(db, CF_META)?,
        cf(db, CF_STAGING)?,
        cf(db, CF_LOG)?,
    );
    let current = match super::read_positions(db)? {
        Some(p) => p.get(stream).copied().unwrap_or(0),
        None => read_u64(db, META_CHECKPOINT)?.unwrap_or(0) >> SLOT_SHIFT,
    };
    let write = |wb: WriteBatch, sync: bool| {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        db.write_opt(wb, &wo)
            .map_err(|e| io_error("cannot install a snapshot", e))
    };
    let mut installed = None;
    if slot > current {
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(data, &b""[..], &b"\xff\xff\xff\xff\xff"[..]);
        let mut size = 0;
        for item in db.iterator_cf(
            staging,
            IteratorMode::From(b"d", rocksdb::Direction::Forward),
        ) {
            let (k, v) = item.map_err(|e| io_error("cannot read a staged snapshot", e))?;
            if k.first() != Some(&b'd') {
                break;
            }
            size += k.len() + v.len();
            wb.put_cf(data, &k[1..], &v);
            if size >= 4 << 20 {
                write(std::mem::take(&mut wb), false)?;
                size = 0;
            }
        }
        write(wb, false)?;
        let mut wb = WriteBatch::default();
        for item in db.iterator_cf(
            staging,
            IteratorMode::From(b"m", rocksdb::Direction::Forward),
        ) {
            let (k, v) = item.map_err(|e| io_error("cannot read a staged snapshot", e))?;
            if k.first() != Some(&b'm') {
                break;
            }
            wb.put_cf(meta, &k[1..], &v);
        }
        // The replaced state's log, if any, means nothing now.
        wb.delete_range_cf(log, 0u64.to_be_bytes(), u64::MAX.to_be_bytes());
        db.flush_wal(true)
            .map_err(|e| io_error("cannot install a snapshot", e))?;
        write(wb, true)?;
        installed = Some(slot);
    }
    let mut wb = WriteBatch::default();
    wb.delete_range_cf(staging, &b""[..], &b"\xff"[..]);
    wb.delete_cf(meta, META_SNAPSHOT);
    write(wb, true)?;
    Ok(installed)
}
