//! Moving a snapshot of the applied state to a replica that needs stream
//! entries every replica it asked has forgotten (see
//! [`Ready::snapshot_needed`](crate::paxos::Ready)).
//!
//! The sender reads the snapshot from its machine part by part on a
//! thread of its own and sends each part as a [`Message::Snapshot`]; the
//! receiver stores it through its machine and answers
//! [`Message::SnapshotAck`]. One part is in flight at a time, re-sent
//! until acknowledged (transports may drop messages), and a transfer
//! whose parts go unacknowledged for a while is abandoned: the replica
//! will ask again.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::net::Transport;
use crate::paxos::{Envelope, Message, NodeId, Slot, Value};

/// A snapshot being read.
pub trait SnapshotSource: Send {
    /// Every slot below this is in the snapshot.
    fn slot(&self) -> Slot;

    /// The next part, or `None` after the last.
    fn next_part(&mut self) -> Result<Option<Vec<u8>>, String>;
}

/// What became of a snapshot part given to the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Stored; more parts are expected.
    Stored,
    /// The last part: the machine has installed the snapshot in place,
    /// and the stream goes on from its slot.
    Installed,
    /// The last part: the snapshot is stored durably, and the machine
    /// restarts the node to install it (the stream stops now).
    Restart,
}

/// How long a part may go unacknowledged before it is sent again...
pub const RESEND_AFTER: Duration = Duration::from_secs(1);

/// ...and how long before the transfer is abandoned.
pub const ABANDON_AFTER: Duration = Duration::from_secs(15);

/// Sends `source` to `to`, one part at a time, taking acknowledgements
/// (the part numbers) from `acks`; the last part carries `before`, the
/// value chosen for the slot before the snapshot's. Returns when the last
/// part is acknowledged or the transfer is abandoned.
pub fn send(
    from: NodeId,
    to: NodeId,
    mut source: Box<dyn SnapshotSource>,
    before: Option<Value>,
    transport: Arc<dyn Transport>,
    acks: Receiver<u64>,
) {
    let slot = source.slot();
    let started = Instant::now();
    let mut next = match source.next_part() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a snapshot");
            return;
        }
    };
    let mut seq = 0u64;
    let mut bytes = 0usize;
    while let Some(data) = next.take() {
        next = match source.next_part() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a snapshot");
                return;
            }
        };
        let last = next.is_none();
        bytes += data.len();
        let msg = Message::Snapshot {
            slot,
            seq,
            data,
            last,
            before: if last { before.clone() } else { None },
        };
        let first_sent = Instant::now();
        'part: loop {
            transport.send(Envelope {
                from,
                to,
                msg: msg.clone(),
            });
            let sent = Instant::now();
            while sent.elapsed() < RESEND_AFTER {
                match acks.recv_timeout(RESEND_AFTER.saturating_sub(sent.elapsed())) {
                    Ok(acked) if acked == seq => break 'part,
                    Ok(_) => {} // a duplicate of an earlier one
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            if first_sent.elapsed() > ABANDON_AFTER {
                tracing::warn!(
                    peer = to,
                    slot,
                    part = seq,
                    "a snapshot transfer got no answer; abandoned (the replica will ask again)"
                );
                return;
            }
        }
        seq += 1;
    }
    tracing::info!(
        peer = to,
        slot,
        parts = seq,
        bytes,
        seconds = started.elapsed().as_secs_f64(),
        "sent a snapshot to a lagging replica"
    );
}

/// The receiving side's progress with one transfer.
#[derive(Debug)]
pub struct Receiving {
    /// The sender.
    pub from: NodeId,
    /// The snapshot's slot.
    pub slot: Slot,
    /// The next part expected.
    pub next: u64,
    /// When the last part arrived.
    pub at: Instant,
}

/// What to do with an arriving part.
#[derive(Debug, PartialEq, Eq)]
pub enum Part {
    /// Store it (it is the next of the current transfer, or part 0 of a
    /// new one).
    Store,
    /// A part stored already (its acknowledgement was lost): acknowledge
    /// it again.
    Ack,
    /// Not wanted (another transfer is under way, or out of order).
    Ignore,
}

/// Decides about part `seq` of the snapshot at `slot` from `from`, given
/// the transfer under way (updated when a new one starts). A transfer
/// that has been silent for [`ABANDON_AFTER`] gives way to a new one.
pub fn classify(current: &mut Option<Receiving>, from: NodeId, slot: Slot, seq: u64) -> Part {
    if let Some(r) = current.as_ref() {
        if r.from == from && r.slot == slot {
            if seq == r.next {
                return Part::Store;
            }
            if seq < r.next {
                return Part::Ack;
            }
            return Part::Ignore;
        }
        if r.at.elapsed() < ABANDON_AFTER {
            return Part::Ignore;
        }
    }
    if seq != 0 {
        return Part::Ignore;
    }
    *current = Some(Receiving {
        from,
        slot,
        next: 0,
        at: Instant::now(),
    });
    Part::Store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_taken_in_order_from_one_sender_at_a_time() {
        let mut cur = None;
        assert_eq!(classify(&mut cur, 1, 10, 1), Part::Ignore);
        assert_eq!(classify(&mut cur, 1, 10, 0), Part::Store);
        cur.as_mut().unwrap().next = 1;
        assert_eq!(classify(&mut cur, 1, 10, 0), Part::Ack);
        assert_eq!(classify(&mut cur, 2, 12, 0), Part::Ignore);
        assert_eq!(classify(&mut cur, 1, 10, 2), Part::Ignore);
        assert_eq!(classify(&mut cur, 1, 10, 1), Part::Store);
    }
}
