//! The values and messages replicas exchange (the wire vocabulary of the
//! Multi-Paxos core in [`super`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::bytes;

/// A replica's identity.
pub type NodeId = u32;

/// A position in the replicated log; the first is 1.
pub type Slot = u64;

/// A leadership: ordered by number, then node (so two candidates with one
/// number are still ordered). Its number counts this group's leaderships;
/// it is not a Mako epoch (`kv::Epoch`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    /// The number of the leadership (higher ones replace lower ones).
    pub number: u64,
    /// The leader.
    pub node: NodeId,
}

/// What a slot holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    /// A hole filled by a new leader: applying it does nothing.
    Noop,
    /// A batch proposed by a leader.
    Batch {
        /// The leadership that proposed it.
        origin: Ballot,
        /// It is that leadership's first batch. Every other batch of a
        /// leadership follows the previous one in the next slot, and may
        /// depend on it (its transactions may have read from the
        /// previous batch's).
        first: bool,
        /// The batch (opaque here). Shared: a value is held by the
        /// acceptor state, the Accepts to every peer and the proposer's
        /// own record at once, without copies.
        #[serde(with = "bytes")]
        data: Arc<[u8]>,
    },
}

impl Value {
    /// The leadership that proposed it (none for a no-op).
    pub fn origin(&self) -> Option<Ballot> {
        match self {
            Value::Noop => None,
            Value::Batch { origin, .. } => Some(*origin),
        }
    }

    /// The batch's bytes (none for a no-op).
    pub fn data(&self) -> Option<&[u8]> {
        match self {
            Value::Noop => None,
            Value::Batch { data, .. } => Some(data),
        }
    }
}

/// A protocol message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Phase 1a: promise `ballot`, and report what you accepted from slot
    /// `from` on.
    Prepare { ballot: Ballot, from: Slot },
    /// Phase 1b: the promise, with the accepted entries asked for. Every
    /// slot below `log_start` is chosen and was forgotten by the sender
    /// (compacted, or applied before a restart or a snapshot), so the
    /// report says nothing about those slots.
    Promise {
        ballot: Ballot,
        accepted: Vec<(Slot, Ballot, Value)>,
        log_start: Slot,
    },
    /// The ballot of a Prepare or Accept is below the one promised.
    Reject { ballot: Ballot, promised: Ballot },
    /// Phase 2a, batched: accept these entries; every slot below `chosen`
    /// is chosen. With no entries, a heartbeat. Every replica has applied
    /// and made durable every slot below `forget`: nobody will need those
    /// entries again. `sent` is the leader's tick when it sent this
    /// (echoed back, for the leader's lease).
    Accept {
        ballot: Ballot,
        entries: Vec<(Slot, Value)>,
        chosen: Slot,
        forget: Slot,
        sent: u64,
    },
    /// Phase 2b: these slots were accepted (and persisted) in `ballot`;
    /// and every slot below `durable` is applied and durable at the
    /// sender, which will never ask for it again (so the leader may
    /// forget it once every replica says so).
    Accepted {
        ballot: Ballot,
        slots: Vec<Slot>,
        durable: Slot,
        echo: u64,
    },
    /// A replica missing chosen entries asks for those from `from` on.
    CatchUp { from: Slot },
    /// Chosen entries, answering a CatchUp.
    Chosen { entries: Vec<(Slot, Value)> },
    /// A message of the openraft stream (`crate::raft`), which shares the
    /// transports; a Paxos replica ignores it.
    Raft(#[serde(with = "bytes")] Vec<u8>),
    /// A part of a snapshot of the applied state at `slot` (every slot
    /// below it), for a replica that needs entries the sender forgot.
    /// Carried by the stream driver (`crate::snapshot`); the replica
    /// itself ignores it.
    /// The last part also carries the value chosen for the slot before
    /// `slot` (if the sender knows it), which a new leader looks at.
    Snapshot {
        slot: Slot,
        seq: u64,
        #[serde(with = "bytes")]
        data: Vec<u8>,
        last: bool,
        before: Option<Value>,
    },
    /// Part `seq` of the snapshot at `slot` is stored.
    SnapshotAck { slot: Slot, seq: u64 },
    /// A message of stream `stream` of a replica group whose nodes run
    /// several streams (stream 0's messages go untagged). The node routes
    /// it; a replica ignores it.
    Stream { stream: u16, msg: Box<Message> },
    /// A message of the node layer's participant RPCs between replica
    /// groups (opaque here), which shares the transports; a replica
    /// ignores it.
    Rpc(#[serde(with = "bytes")] Vec<u8>),
}

/// The largest ballot number and slot number a message may carry. Honest
/// replicas get nowhere near it (2^62 slots at a billion a second last
/// 146 years); a message beyond it is corrupt or forged and is dropped, so
/// that arithmetic on slots and ballots (`slot + 1`, a new ballot's number)
/// never overflows.
pub const PLAUSIBLE_MAX: u64 = 1 << 62;

impl Message {
    /// False for a message whose ballots or slots are beyond
    /// [`PLAUSIBLE_MAX`].
    pub fn plausible(&self) -> bool {
        let b = |b: &Ballot| b.number < PLAUSIBLE_MAX;
        let s = |s: &Slot| *s < PLAUSIBLE_MAX;
        match self {
            Message::Prepare { ballot, from } => b(ballot) && s(from),
            Message::Promise {
                ballot,
                accepted,
                log_start,
            } => b(ballot) && s(log_start) && accepted.iter().all(|(slot, ab, _)| s(slot) && b(ab)),
            Message::Reject { ballot, promised } => b(ballot) && b(promised),
            Message::Accept {
                ballot,
                entries,
                chosen,
                forget,
                ..
            } => b(ballot) && s(chosen) && s(forget) && entries.iter().all(|(slot, _)| s(slot)),
            Message::Accepted {
                ballot,
                slots,
                durable,
                ..
            } => b(ballot) && s(durable) && slots.iter().all(s),
            Message::CatchUp { from } => s(from),
            Message::Chosen { entries } => entries.iter().all(|(slot, _)| s(slot)),
            Message::Raft(_) | Message::Rpc(_) => true,
            Message::Snapshot { slot, .. } | Message::SnapshotAck { slot, .. } => s(slot),
            Message::Stream { msg, .. } => msg.plausible(),
        }
    }
}

/// A message with its sender and receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The message.
    pub msg: Message,
}
