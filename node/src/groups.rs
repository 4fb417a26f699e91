//! Several replica groups: where each shard lives, who leads each group,
//! and the clients a node uses for the shards other groups hold
//! (DESIGN.md, "Node layer"; Mako §4).
//!
//! Every node's data directory has every shard of the cluster (a vector
//! clock names them all), but a node installs into its own group's only.
//! Another group's shard is an empty copy whose watermark follows what
//! that group's leader reports: each leader sends its shards' durable
//! watermarks to every node of the other groups every `gossip` interval
//! ([`crate::rpc::Rpc::send_watermarks`]), and a node raises its copies
//! ([`kv::persist::Persist::remote_watermark`]). So a commit reply waits
//! until the transaction's vector clock is covered on every shard,
//! remote ones included (VC ≤ VW), and a replica's replay applies an
//! entry only once what it depends on in other groups is durable there.
//!
//! - [`RemoteShard`]: reads, scans and read validation of another group's
//!   shard are calls to that group's leader.
//! - [`Router`]: knows each group's leader (first the preferred one; then
//!   whoever sends that group's watermarks, or answers a call); a call
//!   that the node it went to cannot serve (not the leader, or silent) is
//!   tried on the group's other members, so a leader change is followed
//!   without the client seeing it. It certifies transactions that touch
//!   other groups ([`txn::Remote`]) with [`crate::rpc::commit`].
//!
//! Caveats (see the README): the remote watermarks reach a replica by
//! gossip, not through its group's stream, so they are not part of what
//! the stream orders; a failed group (the configuration manager, global
//! epochs, rollback) is not handled yet; a coordinator takes no clock
//! value of its own shard.

use std::ops::Bound;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kv::{Epoch, Error, ErrorKind, ReadResult, Result, ShardId, VectorClock};
use repl::paxos::NodeId;
use txn::client::{KeyRange, LocalCommit, ScanResult, Validation, Write};
use txn::coord::{CommitProtocol, Coordinator, Participant};
use txn::participant::{Answer, Call};
use txn::{ShardClient, TxnId};

use crate::rpc::{CommitTiming, Rpc};

/// One replica group, as every node knows it.
#[derive(Clone, Debug)]
pub struct GroupInfo {
    /// Its name.
    pub name: String,
    /// The shards it holds.
    pub shards: Vec<ShardId>,
    /// Its members, the preferred leader first.
    pub members: Vec<NodeId>,
}

/// The groups of a cluster with several, from one node's side.
#[derive(Clone, Debug)]
pub struct Layout {
    /// This node's group (an index into `groups`).
    pub mine: usize,
    /// Every group.
    pub groups: Vec<GroupInfo>,
    /// How often a leader reports its watermarks to the other groups.
    pub gossip: Duration,
    /// How long a participant holds a transaction's locks before it
    /// validates.
    pub lock_timeout: Duration,
    /// How transactions across groups commit.
    pub protocol: txn::coord::CommitProtocol,
}

impl Layout {
    /// Per shard: held by another group.
    pub fn remote_shards(&self, shards: usize) -> Vec<bool> {
        (0..shards)
            .map(|s| !self.groups[self.mine].shards.contains(&s))
            .collect()
    }
}

/// Routes calls to the groups' leaders (see the module docs).
pub struct Router {
    layout: Layout,
    /// Per group: the node believed to lead it.
    leaders: Arc<[AtomicU32]>,
    /// Per shard: its group.
    group_of: Vec<usize>,
    rpc: OnceLock<Arc<Rpc>>,
    /// With the two-phase-commit-over-Paxos baseline: a shard of this
    /// node's group, where a coordinator logs its decisions.
    decisions: OnceLock<Arc<dyn ShardClient>>,
    timing: CommitTiming,
    /// How long a read waits for some member of a group to answer.
    call_timeout: Duration,
}

impl Router {
    /// The router of a node in `layout` of a cluster of `shards` shards.
    pub fn new(layout: Layout, shards: usize) -> Router {
        let mut group_of = vec![0; shards];
        for (g, info) in layout.groups.iter().enumerate() {
            for &s in &info.shards {
                if let Some(slot) = group_of.get_mut(s) {
                    *slot = g;
                }
            }
        }
        let leaders = layout
            .groups
            .iter()
            .map(|g| AtomicU32::new(g.members[0]))
            .collect();
        Router {
            leaders,
            group_of,
            rpc: OnceLock::new(),
            decisions: OnceLock::new(),
            timing: CommitTiming {
                round_timeout: Duration::from_secs(2),
                give_up: Duration::from_secs(10),
            },
            call_timeout: Duration::from_secs(5),
            layout,
        }
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Connects the router to the node's RPC end (once).
    pub fn set_rpc(&self, rpc: Arc<Rpc>) {
        let _ = self.rpc.set(rpc);
    }

    /// Where this node's coordinators log their decisions, when the
    /// layout's protocol does (once).
    pub fn set_decision_log(&self, shard: Arc<dyn ShardClient>) {
        let _ = self.decisions.set(shard);
    }

    fn rpc(&self) -> Result<&Arc<Rpc>> {
        self.rpc.get().ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "this node is not connected to the other replica groups yet",
            )
        })
    }

    /// The group holding `shard`.
    pub fn group_of(&self, shard: ShardId) -> usize {
        self.group_of[shard]
    }

    /// The group holding `shard`, if the cluster has that shard.
    pub fn holder(&self, shard: ShardId) -> Option<usize> {
        self.group_of.get(shard).copied()
    }

    /// The node believed to lead group `g`.
    pub fn leader(&self, g: usize) -> NodeId {
        self.leaders[g].load(Ordering::Acquire)
    }

    /// `node` showed that it leads group `g` (it reported the group's
    /// watermarks, or served a call); ignored unless it is a member.
    pub fn learned_leader(&self, g: usize, node: NodeId) {
        if let Some(info) = self.layout.groups.get(g)
            && info.members.contains(&node)
        {
            self.leaders[g].store(node, Ordering::Release);
        }
    }

    /// Calls group `g`'s leader; a node that cannot serve (not the
    /// leader) or does not answer is passed over for the group's other
    /// members until one serves or `call_timeout` has passed.
    pub fn call(&self, g: usize, call: Call) -> Result<Answer> {
        let rpc = self.rpc()?;
        let info = &self.layout.groups[g];
        let deadline = Instant::now() + self.call_timeout;
        let first = self.leader(g);
        let start = info.members.iter().position(|&m| m == first).unwrap_or(0);
        let mut last: Option<Error> = None;
        for attempt in 0.. {
            let node = info.members[(start + attempt) % info.members.len()];
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rpc.call(node, call.clone(), left.min(Duration::from_secs(1))) {
                Ok(answer) => {
                    self.learned_leader(g, node);
                    return Ok(answer);
                }
                Err(e) if e.kind == ErrorKind::Unavailable => last = Some(e),
                Err(e) => return Err(e),
            }
            if (attempt + 1) % info.members.len() == 0 {
                // Nobody served: an election may be under way.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "no leader of replica group {:?} answered within {:?}{}",
                info.name,
                self.call_timeout,
                last.map(|e| format!(" (last: {})", e.message))
                    .unwrap_or_default()
            ),
        ))
    }
}

impl txn::Remote for Router {
    fn participant(&self, shard: ShardId) -> Participant {
        self.group_of(shard) as Participant
    }

    fn commit(&self, coord: Coordinator) -> Result<VectorClock> {
        let rpc = self.rpc()?;
        // The coordinator runs on its own group's serving leader: that
        // participant is this node, whatever the router last heard.
        let (leaders, mine, me) = (self.leaders.clone(), self.layout.mine, rpc.me());
        let node_of: crate::rpc::NodeOf = Arc::new(move |p| {
            let g = p as usize;
            if g == mine {
                me
            } else {
                leaders[g].load(Ordering::Acquire)
            }
        });
        let decision_log: Option<crate::rpc::DecisionLog> = match self.layout.protocol {
            CommitProtocol::Speculative => None,
            CommitProtocol::TwoPhaseOverPaxos => self.decisions.get().map(|shard| {
                let shard = shard.clone();
                Arc::new(move |txn, epoch| shard.log_prepared(txn, epoch))
                    as crate::rpc::DecisionLog
            }),
        };
        crate::rpc::commit_with_decision_log(rpc, coord, node_of, self.timing, decision_log)
            .map_err(|e| {
                if e.kind == ErrorKind::Unavailable {
                    // Aborted before the commit point because a group's
                    // leader did not serve (a leader change, most likely):
                    // nothing was committed, and a retry finds the new one.
                    Error::conflict(format!(
                        "could not serialize access: the transaction was aborted because a replica \
                     group's leader did not answer ({}); retry it",
                        e.message
                    ))
                } else {
                    e
                }
            })
    }
}

/// A shard another replica group holds, reached through its leader.
pub struct RemoteShard {
    router: Arc<Router>,
    shard: ShardId,
}

impl RemoteShard {
    /// Shard `shard`, through `router`.
    pub fn new(router: Arc<Router>, shard: ShardId) -> RemoteShard {
        RemoteShard { router, shard }
    }

    fn call(&self, call: Call) -> Result<Answer> {
        self.router.call(self.router.group_of(self.shard), call)
    }

    fn not_here(&self) -> Error {
        Error::internal(format!(
            "shard {} is another replica group's: its certification goes through that group's \
             leader, not a direct call",
            self.shard
        ))
    }
}

/// Present rows a remote scan reads per call.
pub const SCAN_PAGE: usize = 10_000;

/// The bound just past a scan page's last key (`Included(k)` becomes
/// `Excluded(k)`).
fn excluded(edge: &Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match edge {
        Bound::Included(k) | Bound::Excluded(k) => Bound::Excluded(k.clone()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A participant answered with something other than what was asked.
fn unexpected(answer: &Answer) -> Error {
    Error::internal(format!("a participant answered {answer:?} to another call"))
}

impl ShardClient for RemoteShard {
    fn shard_id(&self) -> ShardId {
        self.shard
    }

    fn read(&self, key: &[u8]) -> Result<ReadResult> {
        match self.call(Call::Read {
            shard: self.shard,
            key: key.to_vec(),
        })? {
            Answer::Read(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    fn read_many(&self, keys: &[Vec<u8>]) -> Result<Vec<ReadResult>> {
        match self.call(Call::ReadMany {
            shard: self.shard,
            keys: keys.to_vec(),
        })? {
            Answer::Reads(r) if r.len() == keys.len() => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// In pages of [`SCAN_PAGE`] present rows, each a call of its own (a
    /// large scan in one call would be one huge message, and would take
    /// the leader longer than a call is given). The pages are read at
    /// different times; validation checks every row seen, whichever page
    /// saw it.
    fn scan(&self, range: &KeyRange, limit: Option<usize>, reverse: bool) -> Result<ScanResult> {
        let mut pages: Vec<Vec<(Vec<u8>, ReadResult)>> = Vec::new();
        let mut rest = range.clone();
        let mut left = limit;
        let covered = loop {
            let page = left.map_or(SCAN_PAGE, |l| l.min(SCAN_PAGE));
            let r = match self.call(Call::Scan {
                shard: self.shard,
                range: rest.clone(),
                limit: Some(page),
                reverse,
            })? {
                Answer::Scan(r) => r,
                other => return Err(unexpected(&other)),
            };
            let present = r.records.iter().filter(|(_, v)| v.value.is_some()).count();
            pages.push(r.records);
            let part = r.covered.unwrap_or_else(|| rest.clone());
            if part == rest {
                break range.clone(); // the rest of the range was read
            }
            // Stopped at a key: the page (or the caller's limit) is full.
            let stopped_at_key = if reverse {
                matches!(part.start, Bound::Included(_))
            } else {
                matches!(part.end, Bound::Included(_))
            };
            if !stopped_at_key {
                return Err(Error::internal(format!(
                    "a participant's scan page covered {part:?} of {rest:?}"
                )));
            }
            let (edge, next) = if reverse {
                let edge = part.start.clone();
                let next = KeyRange {
                    start: rest.start.clone(),
                    end: excluded(&edge),
                };
                (edge, next)
            } else {
                let edge = part.end.clone();
                let next = KeyRange {
                    start: excluded(&edge),
                    end: rest.end.clone(),
                };
                (edge, next)
            };
            if let Some(l) = left.as_mut() {
                *l = l.saturating_sub(present);
                if *l == 0 {
                    break if reverse {
                        KeyRange {
                            start: edge,
                            end: range.end.clone(),
                        }
                    } else {
                        KeyRange {
                            start: range.start.clone(),
                            end: edge,
                        }
                    };
                }
            }
            rest = next;
        };
        // Records stay in key order: a reverse scan's later pages hold
        // smaller keys.
        if reverse {
            pages.reverse();
        }
        Ok(ScanResult {
            records: pages.into_iter().flatten().collect(),
            covered: Some(covered),
        })
    }

    fn lock(&self, _txn: TxnId, _keys: &[Write]) -> Result<()> {
        Err(self.not_here())
    }

    fn get_clock(&self, _txn: TxnId) -> Result<u64> {
        Err(self.not_here())
    }

    fn validate(&self, txn: TxnId, validation: &Validation, held: &[Write]) -> Result<()> {
        if !held.is_empty() {
            return Err(self.not_here());
        }
        match self.call(Call::Validate {
            txn,
            checks: vec![(self.shard, validation.clone())],
            locked: false,
        })? {
            Answer::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn install(&self, _txn: TxnId, _w: &[Write], _vc: &VectorClock, _e: Epoch) -> Result<()> {
        Err(self.not_here())
    }

    fn release(&self, _txn: TxnId, _writes: &[Write]) -> Result<()> {
        Err(self.not_here())
    }

    fn commit_local(&self, _commit: LocalCommit<'_>) -> Result<VectorClock> {
        Err(self.not_here())
    }
}
