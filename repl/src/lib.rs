//! Replication: the Multi-Paxos core of Mako's streams (DESIGN.md §1.2).
//!
//! Each worker of a shard leader appends batches of installed transactions
//! to its own *stream*, a replicated log among the shard's replicas. This
//! crate holds the consensus core of one stream, [`paxos::Replica`], written
//! sans-IO: a replica is a value that is stepped with messages
//! ([`Replica::step`]), ticked by a clock it does not own
//! ([`Replica::tick`]) and given batches to replicate
//! ([`Replica::propose`]); it never touches sockets, timers, threads or
//! disks. What it needs done comes out of [`Replica::ready`]: state to
//! persist (which the caller must make durable *before* sending the
//! messages, since they promise it), messages to send, and the entries
//! chosen since the last call, in slot order.
//!
//! The life of a batch: the leader assigns it the next slot and sends one
//! `Accept` per tick carrying every new entry (batched phase 2); each voter
//! persists it and answers `Accepted`; with a majority the slot is chosen,
//! and followers learn that from the `chosen` bound carried on the next
//! `Accept` or heartbeat. Phase 1 runs once per leadership, when a
//! follower's election timer expires: its ballot carries the next number,
//! and it re-proposes every slot a majority may have accepted, filling holes
//! with no-ops. A replica that missed entries asks the leader for them
//! (`CatchUp`). Learners receive everything and never vote.
//!
//! Around the core: [`stream::Stream`] runs a replica on a thread with a
//! disk ([`stream::Storage`]), a network ([`net::Transport`]: TCP or
//! in-process, either with injected per-pair latency) and a state machine
//! ([`stream::Machine`]). [`raft::RaftStream`] offers the same stream on
//! openraft 0.9 (`consensus = "raft"`), over the same transports and
//! machine.
//!
//! A replica that fell behind what the others keep of the log (each keeps
//! `retain` slots beyond what every replica has made durable) is sent a
//! snapshot of a replica's applied state ([`snapshot`]) and goes on from
//! its slot. The openraft stream builds its snapshots from the same data
//! and sends them with openraft's own snapshot replication.
//!
//! A node may run several streams of one group (Mako's per-worker
//! streams): each is its own [`paxos::Replica`] and [`stream::Stream`];
//! messages of streams other than the first travel tagged
//! ([`paxos::Message::Stream`]), and only the first stream's replicas
//! stand for election on their own ([`paxos::Replica::set_candidacy`]):
//! the node that leads it lets its other streams stand, so one node leads
//! them all. Merging the streams' chosen entries is the node's business
//! (`kv`'s replay, per shard in clock order).
//!
//! [`Replica::step`]: paxos::Replica::step
//! [`Replica::tick`]: paxos::Replica::tick
//! [`Replica::propose`]: paxos::Replica::propose
//! [`Replica::ready`]: paxos::Replica::ready

pub mod net;
pub mod paxos;
pub mod raft;
pub mod snapshot;
pub mod stream;
