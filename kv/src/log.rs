//! The commit log interface: what a shard hands to persistence (and, later,
//! to its replication streams) for every transaction it installs.
//!
//! A participant appends one [`LogEntry`] per transaction and shard —
//! after-images of the writes, the transaction's vector clock, epoch and id
//! — *before* installing the writes, while their locks are still held. So
//! for any key, the log holds its writes in install order, and replaying
//! the log in order rebuilds the same state without comparing versions.
//! `append` only queues the entry; the shard learns that it is durable
//! through [`crate::Shard::clock_durable`], and commit replies wait for
//! that (see `txn::gate`).
//!
//! Entries have a compact binary encoding ([`LogEntry::encode`] /
//! [`LogEntry::decode`]) that does not depend on where they are stored.

use std::sync::Arc;

use crate::clock::{Epoch, VectorClock};
use crate::error::{Error, ErrorKind, Result};
use crate::shard::ShardId;

/// One written key and its new value (`None` for a delete).
pub type AfterImage = (Vec<u8>, Option<Arc<[u8]>>);

/// One transaction's writes on one shard, as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The transaction.
    pub txn: u64,
    /// The shard the writes belong to.
    pub shard: ShardId,
    /// The transaction's vector clock; its entry for `shard` orders this
    /// entry among the shard's commits.
    pub vc: VectorClock,
    /// The epoch the transaction committed in.
    pub epoch: Epoch,
    /// After-images: the new value of each key, `None` for a delete.
    pub writes: Vec<AfterImage>,
}

/// Where a shard sends the transactions it installs.
pub trait CommitLog: Send + Sync {
    /// Queues `entry` (called with the entry's keys locked). Fails when the
    /// log can no longer make anything durable; the commit then cannot be
    /// acknowledged.
    fn append(&self, entry: LogEntry) -> Result<()>;

    /// The error that stopped the log, if one did: from then on commits
    /// with writes are refused before they take any lock.
    fn failure(&self) -> Option<Error>;

    /// What an acknowledgement promises, for people (`SHOW
    /// mako.durability`), e.g. "rocksdb log, sync=group".
    fn durability(&self) -> String;

    /// Whether this node may serve transactions now: a replica that is not
    /// its group's serving leader refuses them (reads too: its data may be
    /// stale), saying where the leader is.
    fn serving(&self) -> Result<()> {
        Ok(())
    }

    /// The replication status, for people (`SHOW mako.replication`);
    /// `None` when the node is not replicated.
    fn status(&self) -> Option<String> {
        None
    }
}

/// Where a replicated node's log sends its batches: the replication
/// stream (implemented above `kv`, which knows nothing of consensus).
pub trait Replicate: Send + Sync {
    /// Replicates a batch of entries, in log order, on stream `stream`
    /// (that of the log queue it came from). Returns at once; the stream
    /// reports the batch chosen through `Persist::deliver` (`own =
    /// true`), and calls `Persist::proposal_done` as soon as the batch is
    /// chosen or lost. Fails when this node does not lead, handing the
    /// entries back.
    fn propose(
        &self,
        stream: usize,
        batch: Vec<LogEntry>,
    ) -> std::result::Result<(), (Error, Vec<LogEntry>)>;

    /// Ok while this node is its group's serving leader; otherwise an
    /// error (kind [`ErrorKind::NotServing`]) that says where the leader is.
    fn serving(&self) -> Result<()>;

    /// What an acknowledgement promises, for people.
    fn durability(&self) -> String;

    /// The replication status, for people.
    fn status(&self) -> String;
}

/// A new leader's first stream value: it closes what earlier leaders
/// wrote (DESIGN.md §1.4, on one replica group). Earlier leaders' chosen
/// entries whose vector clock is not covered by `fvw` depend on something
/// that was never chosen: they were never acknowledged, and every replica
/// drops them. The new leader's clock values continue above `clock_max`,
/// so none of them is mistaken for a dropped one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// The new leader (its node id) ...
    pub leader: u64,
    /// ... and its leadership (ballot number or term; not a Mako
    /// [`Epoch`]): the leader serves once it has applied its own close.
    pub ballot: u64,
    /// Per stream: every slot below it holds earlier leaders' values.
    pub through: Vec<u64>,
    /// Per shard: the finalized vector watermark (FVW), every clock value
    /// up to which is accounted for by a chosen entry.
    pub fvw: Vec<u64>,
    /// Per shard: the highest clock value earlier leaders' entries name
    /// (their own, or in the clocks of what they read).
    pub clock_max: Vec<u64>,
}

/// A value of a replication stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamValue {
    /// Installed transactions, in log order.
    Batch(Vec<LogEntry>),
    /// A new leader's close of its predecessors' entries.
    Close(Close),
}

/// The count that marks an encoded [`Close`] where a batch has its entry
/// count.
const CLOSE_TAG: u32 = u32::MAX;

impl StreamValue {
    /// The value's bytes (a batch's are [`encode_batch`]'s).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            StreamValue::Batch(entries) => encode_batch(entries),
            StreamValue::Close(c) => {
                let mut out = CLOSE_TAG.to_le_bytes().to_vec();
                out.extend_from_slice(&c.leader.to_le_bytes());
                out.extend_from_slice(&c.ballot.to_le_bytes());
                for v in [&c.through, &c.fvw, &c.clock_max] {
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    for x in v {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
                out
            }
        }
    }

    /// Checks that `bytes` decode (as [`StreamValue::decode`] would)
    /// without building the value: for a replica deciding whether to
    /// accept a value before it stores or acknowledges it.
    pub fn check(bytes: &[u8]) -> Result<()> {
        if bytes.len() < 4 || bytes[..4] != CLOSE_TAG.to_le_bytes() {
            let mut r = Reader(bytes);
            let n = r.u32()?;
            for _ in 0..n {
                LogEntry::walk(r.bytes()?, |_, _| {})?;
            }
            if !r.rest().is_empty() {
                return Err(corrupt("trailing bytes after a batch of log entries"));
            }
            return Ok(());
        }
        Self::decode(bytes).map(|_| ())
    }

    /// Decodes what [`StreamValue::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<StreamValue> {
        if bytes.len() < 4 || bytes[..4] != CLOSE_TAG.to_le_bytes() {
            return decode_batch(bytes).map(StreamValue::Batch);
        }
        let mut r = Reader(&bytes[4..]);
        let leader = r.u64()?;
        let ballot = r.u64()?;
        let mut vecs = Vec::with_capacity(3);
        for _ in 0..3 {
            let n = r.u32()? as usize;
            let mut v = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                v.push(r.u64()?);
            }
            vecs.push(v);
        }
        if !r.rest().is_empty() {
            return Err(corrupt("trailing bytes after a stream close"));
        }
        let clock_max = vecs.pop().expect("3");
        let fvw = vecs.pop().expect("3");
        let through = vecs.pop().expect("3");
        if fvw.len() != clock_max.len() {
            return Err(corrupt("a stream close with clocks of two lengths"));
        }
        Ok(StreamValue::Close(Close {
            leader,
            ballot,
            through,
            fvw,
            clock_max,
        }))
    }
}

/// Encodes a batch of entries as one stream value.
pub fn encode_batch(entries: &[LogEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        put_bytes(&mut out, &e.encode());
    }
    out
}

/// Decodes a stream value made by [`encode_batch`].
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<LogEntry>> {
    let mut r = Reader(bytes);
    let n = r.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        out.push(LogEntry::decode(r.bytes()?)?);
    }
    if !r.rest().is_empty() {
        return Err(corrupt("trailing bytes after a batch of log entries"));
    }
    Ok(out)
}

/// The first byte of every encoded entry: bumped when the format changes.
/// Format 2 ends with a CRC-32C of everything before it; format 1 (written
/// before it) has no checksum and is still read.
const ENTRY_FORMAT: u8 = 2;

/// The format without a checksum.
const ENTRY_FORMAT_UNCHECKED: u8 = 1;

/// Bytes of the checksum that ends a format-2 entry.
const CHECKSUM: usize = 4;

impl LogEntry {
    /// This entry's clock on its own shard.
    pub fn clock(&self) -> u64 {
        self.vc.get(self.shard)
    }

    /// Bytes of keys and values written.
    pub fn size(&self) -> usize {
        self.writes
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()))
            .sum()
    }

    /// The entry's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .writes
            .iter()
            .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, |v| v.len()))
            .sum();
        let mut out = Vec::with_capacity(36 + 8 * self.vc.entries().len() + size);
        out.push(ENTRY_FORMAT);
        out.extend_from_slice(&self.txn.to_le_bytes());
        out.extend_from_slice(&(self.shard as u32).to_le_bytes());
        out.extend_from_slice(&self.epoch.0.to_le_bytes());
        encode_vc(&mut out, &self.vc);
        out.extend_from_slice(&(self.writes.len() as u32).to_le_bytes());
        for (key, value) in &self.writes {
            put_bytes(&mut out, key);
            match value {
                Some(v) => {
                    out.push(1);
                    put_bytes(&mut out, v);
                }
                None => out.push(0),
            }
        }
        let sum = crc32c::crc32c(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Decodes what [`LogEntry::encode`] wrote; a malformed entry is a
    /// corruption error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<LogEntry> {
        let mut writes = Vec::new();
        let (txn, shard, epoch, vc) = Self::walk(bytes, |key, value| {
            writes.push((key.to_vec(), value.map(Arc::from)));
        })?;
        Ok(LogEntry {
            txn,
            shard,
            vc,
            epoch,
            writes,
        })
    }

    /// Reads an encoded entry, handing each write to `write`; returns the
    /// transaction id, shard, epoch and clock.
    fn walk<'a>(
        bytes: &'a [u8],
        mut write: impl FnMut(&'a [u8], Option<&'a [u8]>),
    ) -> Result<(u64, ShardId, Epoch, VectorClock)> {
        let mut r = Reader(bytes);
        let format = r.u8()?;
        match format {
            ENTRY_FORMAT => {
                let Some(split) = bytes.len().checked_sub(CHECKSUM).filter(|&n| n > 0) else {
                    return Err(corrupt("a log entry shorter than its checksum"));
                };
                let (body, sum) = bytes.split_at(split);
                let sum = u32::from_le_bytes(sum.try_into().expect("4 bytes"));
                if crc32c::crc32c(body) != sum {
                    return Err(corrupt("a log entry does not match its checksum"));
                }
                r = Reader(&body[1..]);
            }
            ENTRY_FORMAT_UNCHECKED => {}
            _ => return Err(corrupt(format!("unknown log entry format {format}"))),
        }
        let txn = r.u64()?;
        let shard = r.u32()? as ShardId;
        let epoch = Epoch(r.u64()?);
        let vc = decode_vc(&mut r)?;
        if shard >= vc.entries().len() {
            return Err(corrupt(format!(
                "log entry of shard {shard} with a {}-entry clock",
                vc.entries().len()
            )));
        }
        let n = r.u32()? as usize;
        for _ in 0..n {
            let key = r.bytes()?;
            let value = match r.u8()? {
                0 => None,
                1 => Some(r.bytes()?),
                b => return Err(corrupt(format!("bad value tag {b} in a log entry"))),
            };
            write(key, value);
        }
        if !r.0.is_empty() {
            return Err(corrupt("trailing bytes after a log entry"));
        }
        Ok((txn, shard, epoch, vc))
    }
}

/// Appends a vector clock: entry count, then the entries.
pub fn encode_vc(out: &mut Vec<u8>, vc: &VectorClock) {
    out.extend_from_slice(&(vc.entries().len() as u16).to_le_bytes());
    for c in vc.entries() {
        out.extend_from_slice(&c.to_le_bytes());
    }
}

/// Reads what [`encode_vc`] wrote.
pub fn decode_vc(r: &mut Reader<'_>) -> Result<VectorClock> {
    let n = r.u16()? as usize;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        entries.push(r.u64()?);
    }
    Ok(VectorClock::from_vec(entries))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// A corruption error (what a damaged file on disk produces).
pub fn corrupt(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Io, format!("corrupt data: {}", message.into()))
}

/// Reads little-endian fields off a byte slice, failing on truncation.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(corrupt("truncated record"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// A `u16`.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> LogEntry {
        LogEntry {
            txn: 42,
            shard: 1,
            vc: VectorClock::from_vec(vec![3, 9]),
            epoch: Epoch(1),
            writes: vec![
                (b"a".to_vec(), Some(Arc::from(&b"one"[..]))),
                (b"b".to_vec(), None),
            ],
        }
    }

    #[test]
    fn entries_roundtrip() {
        let e = entry();
        assert_eq!(LogEntry::decode(&e.encode()).unwrap(), e);
        assert_eq!(e.clock(), 9);
    }

    #[test]
    fn stream_values_roundtrip() {
        let batch = StreamValue::Batch(vec![entry(), entry()]);
        assert_eq!(StreamValue::decode(&batch.encode()).unwrap(), batch);
        let close = StreamValue::Close(Close {
            leader: 2,
            ballot: 7,
            through: vec![12],
            fvw: vec![3, 4],
            clock_max: vec![5, 4],
        });
        let bytes = close.encode();
        assert_eq!(StreamValue::decode(&bytes).unwrap(), close);
        for cut in 4..bytes.len() {
            assert!(StreamValue::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
    }

    /// `check` accepts exactly what `decode` does, for every cut and
    /// every single-byte change of a batch.
    #[test]
    fn check_agrees_with_decode() {
        let bytes = StreamValue::Batch(vec![entry(), entry()]).encode();
        assert!(StreamValue::check(&bytes).is_ok());
        for cut in 0..bytes.len() {
            let b = &bytes[..cut];
            assert_eq!(
                StreamValue::check(b).is_ok(),
                StreamValue::decode(b).is_ok(),
                "cut {cut}"
            );
        }
        for at in 0..bytes.len() {
            for v in [0u8, 1, 7, 0xff] {
                let mut b = bytes.clone();
                b[at] = v;
                assert_eq!(
                    StreamValue::check(&b).is_ok(),
                    StreamValue::decode(&b).is_ok(),
                    "byte {at} set to {v}"
                );
            }
        }
        assert!(StreamValue::check(&[0xff; 64]).is_err());
    }

    #[test]
    fn damaged_entries_are_errors() {
        let bytes = entry().encode();
        for cut in 0..bytes.len() {
            let err = LogEntry::decode(&bytes[..cut]).unwrap_err();
            assert!(err.message.contains("corrupt"), "{err:?}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(LogEntry::decode(&longer).is_err());
        // The checksum catches every change of a byte, also one that
        // would still parse (a key's byte, a clock entry, the epoch).
        for at in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[at] ^= flip;
                let err = LogEntry::decode(&b).expect_err("a changed byte");
                assert!(err.message.contains("corrupt"), "byte {at}: {err:?}");
            }
        }
    }

    /// Entries written before the checksum (format 1) are still read,
    /// and their damaged tags are still refused.
    #[test]
    fn unchecked_entries_of_format_1_are_read() {
        let mut old = entry().encode();
        old.truncate(old.len() - CHECKSUM);
        old[0] = ENTRY_FORMAT_UNCHECKED;
        assert_eq!(LogEntry::decode(&old).unwrap(), entry());
        let tag = 1 + 8 + 4 + 8 + 2 + 16 + 4 + 4 + 1;
        old[tag] = 7;
        assert!(LogEntry::decode(&old).is_err());
    }
}
