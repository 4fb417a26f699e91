//! Deterministic simulation of the Paxos core: replicas exchange messages
//! over a seeded network that delays, drops, duplicates and reorders them,
//! partitions replicas for a while, and crashes and restarts them (a
//! restarted replica keeps only what it persisted). At every step no two
//! replicas may have chosen different values for a slot; after the faults
//! stop, every replica must converge on the same chosen log, which must
//! hold every batch that was proposed and reported chosen.
//!
//! Batches carry the batch their proposer last had in memory (proposed by
//! it or applied), and a chosen batch must come after that one.
//! Proposing follows the node's stream: a leader proposes once it has
//! recovered every earlier slot, and one that loses a proposal (or steps
//! down with some pending) forgets what it had not applied, as the
//! restarted node does.
//!
//! Replicas forget applied entries (compaction); in some runs they keep
//! only a few beyond what they made durable, so that lagging replicas are
//! sent snapshots of another's applied state (which may be lost or
//! arrive late like any message) and candidates meet promisers whose log
//! starts after their own first unchosen slot.
//!
//! `SIM_SEEDS` sets how many seeds run (default 1000), `SIM_SEED` runs one
//! seed (a failing seed is printed and reproduces exactly).

use std::collections::{BTreeMap, BTreeSet};

use repl::paxos::{Config, Envelope, HardState, NodeId, Persist, Replica, Slot, Value};
use repl::stream::Record;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A batch is its id and the id of the batch it depends on (the last one
/// its proposer had in memory, 0 for none), 8 bytes each.
fn batch(id: u64, dep: u64) -> Vec<u8> {
    [id.to_be_bytes(), dep.to_be_bytes()].concat()
}

fn batch_id(data: &[u8]) -> u64 {
    u64::from_be_bytes(data[..8].try_into().expect("8 bytes"))
}

fn batch_dep(data: &[u8]) -> u64 {
    u64::from_be_bytes(data[8..16].try_into().expect("8 bytes"))
}

/// A message in flight, delivered at `at`.
struct InFlight {
    at: u64,
    env: Envelope,
}

/// A snapshot in flight: the sender's durable applied log (slots 1 to
/// `slot - 1`), delivered at `at`.
struct SnapshotInFlight {
    at: u64,
    from: usize,
    to: usize,
    slot: Slot,
    log: Vec<Value>,
    /// The sender's value for the slot before `slot`, if it knows it.
    before: Option<Value>,
}

struct Sim {
    rng: Rng,
    now: u64,
    configs: Vec<Config>,
    /// Each replica's durable records (survive a crash), as a stream
    /// writes them: promises, accepted and chosen entries.
    disks: Vec<Vec<Record>>,
    /// Each replica's durable applied point: a restart applies again
    /// from there (as a node restarts from its last checkpoint).
    durable: Vec<Slot>,
    /// The running replicas (`None` while crashed).
    nodes: Vec<Option<Replica>>,
    net: Vec<InFlight>,
    snapshots: Vec<SnapshotInFlight>,
    /// Snapshots installed so far.
    installed: u64,
    /// Steps at which a learner led, ready to serve.
    learner_led: u64,
    /// Pairs that cannot talk (both directions).
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Faults on: loss, duplication, partitions, crashes.
    faults: bool,
    /// Clients propose at random steps.
    proposing: bool,
    /// Every value chosen anywhere, by slot.
    chosen: BTreeMap<Slot, Value>,
    /// What each replica has applied, in order (from slot 1).
    applied: Vec<Vec<Value>>,
    /// Batches (ids) whose slot some replica reported chosen.
    committed: BTreeSet<u64>,
    /// The last batch each replica has in memory (proposed by it, or
    /// applied): a batch it proposes next may have read from it.
    memory: Vec<u64>,
    /// Each replica's proposals not yet chosen, by slot: batch ids.
    pending: Vec<BTreeMap<Slot, u64>>,

    next_batch: u64,
    seed: u64,
}

impl Sim {
    /// A group of `voters` and `learners`; `standby` learners may lead.
    fn new(seed: u64, voters: u32, learners: u32, standby: bool) -> Sim {
        let all = voters + learners;
        // A quarter of the runs keep everything a laggard needs; the
        // others forget soon and send snapshots.
        let retain = [u64::MAX, 2, 6, 20][(seed % 4) as usize];
        let configs: Vec<Config> = (0..all)
            .map(|id| Config {
                id,
                voters: (0..voters).collect(),
                learners: (voters..all).collect(),
                standby,
                election_ticks: 10,
                heartbeat_ticks: 3,
                max_batch: 16,
                stick_ticks: 10,
                seed,
                retain,
            })
            .collect();
        let nodes = configs
            .iter()
            .map(|c| Some(Self::replica(c, Record::load(vec![]), 1, seed)))
            .collect();
        Sim {
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            now: 0,
            disks: vec![Vec::new(); all as usize],
            durable: vec![1; all as usize],
            nodes,
            net: Vec::new(),
            snapshots: Vec::new(),
            installed: 0,
            learner_led: 0,
            cut: BTreeSet::new(),
            faults: true,
            proposing: true,
            chosen: BTreeMap::new(),
            applied: vec![Vec::new(); all as usize],
            committed: BTreeSet::new(),
            memory: vec![0; all as usize],
            pending: vec![BTreeMap::new(); all as usize],
            next_batch: 0,
            seed,
            configs,
        }
    }

    /// A replica of `cfg` restored from `state` at `applied`. In half the
    /// runs a standby learner stands whenever its timer fires (as on a
    /// node leading the first stream), even behind, rather than once
    /// per leader it followed while up to date.
    fn replica(cfg: &Config, state: HardState, applied: Slot, seed: u64) -> Replica {
        let mut r = Replica::restore(cfg.clone(), state, applied);
        if cfg.standby && cfg.learners.contains(&cfg.id) && seed % 2 == 1 {
            r.set_candidacy(true);
        }
        r
    }

    fn n(&self) -> usize {
        self.configs.len()
    }

    /// Persists, then sends, then applies what replica `i` produced, and
    /// checks that nothing it chose contradicts any other replica.
    fn drain(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let ready = node.ready();
        assert!(
            ready.conflict.is_none(),
            "seed {}: replica {i}: {:?}",
            self.seed,
            ready.conflict
        );
        for p in ready.persist {
            self.disks[i].push(match p {
                Persist::Promised(b) => Record::Promised(b),
                Persist::Accepted(s, b, v) => Record::Accepted(s, b, v),
            });
        }
        for (s, v) in &ready.chosen {
            // As a stream does: a marker when the accepted record holds
            // the chosen value, else the chosen value replaces it (one
            // record per slot).
            if node.accepted(*s) == Some(v) {
                self.disks[i].push(Record::ChosenAsAccepted(*s));
            } else {
                self.disks[i].retain(|r| !matches!(r, Record::Accepted(t, ..) if t == s));
                self.disks[i].push(Record::Chosen(*s, v.clone()));
            }
        }
        for env in ready.early.into_iter().chain(ready.messages) {
            self.send(env);
        }
        for (peer, slot) in ready.snapshot_needed {
            // As a node does: its applied state at its durable point.
            let at = self.durable[i];
            if at > slot {
                self.send_snapshot(i, peer as usize, at);
            }
        }
        let mut lost = false;
        for (slot, value) in ready.chosen {
            match self.chosen.get(&slot) {
                Some(v) => assert_eq!(
                    *v, value,
                    "seed {}: replica {i} chose {value:?} for slot {slot}, another chose {v:?}",
                    self.seed
                ),
                None => {
                    self.chosen.insert(slot, value.clone());
                }
            }
            let log = &mut self.applied[i];
            assert_eq!(
                log.len() as u64 + 1,
                slot,
                "seed {}: replica {i} applied slot {slot} out of order",
                self.seed
            );
            if let Some(b) = value.data() {
                self.committed.insert(batch_id(b));
            }
            // Its own proposal chosen, or replaced (then the node gives
            // up on all of them and restarts); another's batch applied.
            match self.pending[i].remove(&slot) {
                Some(id) if value.data().map(batch_id) != Some(id) => lost = true,
                Some(_) => {}
                None => {
                    if let Some(b) = value.data() {
                        self.memory[i] = batch_id(b);
                    }
                }
            }
            log.push(value);
        }
        // A leader that lost a proposal, or stepped down with some
        // pending (not standing again), restarts as a node does.
        let node = self.nodes[i].as_ref().expect("running");
        if lost || (!self.pending[i].is_empty() && !node.is_leader() && !node.is_candidate()) {
            self.forget_memory(i);
        }
    }

    fn send(&mut self, env: Envelope) {
        let pair = (env.from.min(env.to), env.from.max(env.to));
        if self.faults && (self.cut.contains(&pair) || self.rng.chance(5)) {
            return; // lost
        }
        let copies = if self.faults && self.rng.chance(3) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + 1 + self.rng.below(if self.faults { 8 } else { 3 });
            self.net.push(InFlight {
                at,
                env: env.clone(),
            });
        }
    }

    fn send_snapshot(&mut self, from: usize, to: usize, slot: Slot) {
        let pair = (from.min(to) as NodeId, from.max(to) as NodeId);
        if self.faults && (self.cut.contains(&pair) || self.rng.chance(5)) {
            return; // lost
        }
        let log = self.applied[from][..slot as usize - 1].to_vec();
        let before = self.nodes[from]
            .as_ref()
            .and_then(|n| n.chosen_value(slot - 1).cloned());
        let at = self.now + 1 + self.rng.below(if self.faults { 20 } else { 5 });
        self.snapshots.push(SnapshotInFlight {
            at,
            from,
            to,
            slot,
            log,
            before,
        });
    }

    /// Installs a snapshot that arrived, as a node does: the applied
    /// state is replaced and durable at once, then the replica goes on
    /// from its slot. It must agree with everything chosen.
    fn install(&mut self, snap: SnapshotInFlight) {
        let i = snap.to;
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        if snap.slot <= self.applied[i].len() as u64 + 1 {
            return; // nothing new
        }
        for (k, v) in snap.log.iter().enumerate() {
            let slot = k as u64 + 1;
            match self.chosen.get(&slot) {
                Some(c) => assert_eq!(
                    c, v,
                    "seed {}: a snapshot from replica {} holds {v:?} for slot {slot}, {c:?} was chosen",
                    self.seed, snap.from
                ),
                None => panic!(
                    "seed {}: a snapshot from replica {} holds slot {slot}, which nobody chose",
                    self.seed, snap.from
                ),
            }
        }
        // As a stream does: the value of the slot before is kept as a
        // chosen record.
        if let Some(v) = &snap.before {
            self.disks[i].push(Record::Chosen(snap.slot - 1, v.clone()));
        }
        node.install_snapshot(snap.slot, snap.before);
        self.applied[i] = snap.log;
        self.durable[i] = snap.slot;
        self.forget_memory(i);
        self.installed += 1;
        self.drain(i);
    }

    /// One step of simulated time: deliveries due now (in random order),
    /// ticks, maybe a proposal, maybe a fault.
    fn step(&mut self) {
        self.now += 1;
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].at <= self.now {
                due.push(self.net.swap_remove(i).env);
            } else {
                i += 1;
            }
        }
        // Reorder.
        for k in (1..due.len()).rev() {
            let j = self.rng.below(k as u64 + 1) as usize;
            due.swap(k, j);
        }
        for env in due {
            let to = env.to as usize;
            if let Some(node) = self.nodes[to].as_mut() {
                node.step(env.from, env.msg);
                self.drain(to);
            }
        }
        let mut k = 0;
        while k < self.snapshots.len() {
            if self.snapshots[k].at <= self.now {
                let snap = self.snapshots.swap_remove(k);
                self.install(snap);
            } else {
                k += 1;
            }
        }
        for i in 0..self.n() {
            if let Some(node) = self.nodes[i].as_mut() {
                node.tick();
                self.drain(i);
            }
        }
        let voters = self.configs[0].voters.len();
        if (voters..self.n()).any(|i| self.may_propose(i)) {
            self.learner_led += 1;
        }
        // Clients propose at whoever leads.
        if self.proposing && self.rng.chance(40) {
            for i in 0..self.n() {
                if self.may_propose(i) {
                    self.next_batch += 1;
                    self.propose(i, self.next_batch);
                }
            }
        }
        self.checkpoint();
        if self.faults {
            self.fault();
        }
    }

    /// Restarts replica `i` from its disk: it applies again from its
    /// durable point.
    fn restart(&mut self, i: usize) {
        let state = Record::load(self.disks[i].clone());
        let from = self.durable[i];
        self.nodes[i] = Some(Self::replica(&self.configs[i], state, from, self.seed));
        self.applied[i].truncate(from as usize - 1);
        self.forget_memory(i);
    }

    /// Replica `i` holds in memory exactly what it applied (after a
    /// restart, or a deposition, which restarts a node).
    fn forget_memory(&mut self, i: usize) {
        self.pending[i].clear();
        self.memory[i] = self.applied[i]
            .iter()
            .rev()
            .find_map(|v| v.data().map(batch_id))
            .unwrap_or(0);
    }

    /// As a node's stream lets it: a leader proposes once it has recovered
    /// every earlier slot.
    fn may_propose(&self, i: usize) -> bool {
        self.nodes[i]
            .as_ref()
            .is_some_and(|n| n.is_leader() && n.ready_to_serve())
    }

    /// Replica `i` proposes batch `id`, which depends on what it has in
    /// memory; true if it was taken.
    fn propose(&mut self, i: usize, id: u64) -> bool {
        let data = batch(id, self.memory[i]);
        let Some(node) = self.nodes[i].as_mut() else {
            return false;
        };
        let taken = match node.propose(data) {
            Ok(slot) => {
                self.pending[i].insert(slot, id);
                self.memory[i] = id;
                true
            }
            Err(_) => false,
        };
        self.drain(i);
        taken
    }

    /// Now and then a replica makes what it applied durable (a
    /// checkpoint), and the leader forgets what every replica has made
    /// durable, as a stream does.
    fn checkpoint(&mut self) {
        for i in 0..self.n() {
            let Some(node) = self.nodes[i].as_mut() else {
                continue;
            };
            if self.rng.chance(5) {
                let upto = self.applied[i].len() as u64 + 1;
                let at = self.durable[i] + self.rng.below(upto - self.durable[i] + 1);
                self.durable[i] = at.min(upto);
                node.set_durable(self.durable[i]);
            }
            let below = node.forgettable();
            if below > 1 && self.rng.chance(20) {
                node.compact(below);
                self.disks[i].retain(|r| match r {
                    Record::Promised(_) => true,
                    Record::Accepted(s, ..)
                    | Record::Chosen(s, _)
                    | Record::ChosenAsAccepted(s) => *s + 1 >= below,
                });
            }
        }
    }

    fn fault(&mut self) {
        let n = self.n() as u64;
        match self.rng.below(1000) {
            // Crash a replica: it loses everything it did not persist.
            0..=4 => {
                let i = self.rng.below(n) as usize;
                self.nodes[i] = None;
            }
            // Restart a crashed one from its disk.
            5..=24 => {
                let i = self.rng.below(n) as usize;
                if self.nodes[i].is_none() {
                    self.restart(i);
                }
            }
            // Cut a link, or heal them all.
            25..=34 => {
                let a = self.rng.below(n) as u32;
                let b = self.rng.below(n) as u32;
                if a != b {
                    self.cut.insert((a.min(b), a.max(b)));
                }
            }
            35..=44 => self.cut.clear(),
            _ => {}
        }
    }

    /// Stops the faults, restarts everyone and runs until every replica has
    /// applied the same log, which holds every committed batch.
    fn heal(&mut self) {
        self.faults = false;
        self.proposing = false;
        self.cut.clear();
        for i in 0..self.n() {
            if self.nodes[i].is_none() {
                self.restart(i);
            }
        }
        // One more batch after healing must get through, and everyone must
        // catch up with it.
        let target = self.next_batch + 1;
        let mut proposed = false;
        for round in 0..5_000 {
            self.step();
            // A leader deposed before its proposal was chosen loses it:
            // propose again now and then until it is chosen.
            if round % 100 == 99 && !self.committed.contains(&target) {
                proposed = false;
            }
            if !proposed {
                for i in 0..self.n() {
                    if self.may_propose(i) {
                        self.next_batch = target;
                        proposed = self.propose(i, target);
                        break;
                    }
                }
            }
            let converged = proposed
                && self.committed.contains(&target)
                && self
                    .applied
                    .iter()
                    .all(|log| log.len() == self.applied[0].len());
            if converged && self.applied[0].len() as u64 >= self.chosen.len() as u64 {
                break;
            }
        }
        let first = &self.applied[0];
        for (i, log) in self.applied.iter().enumerate() {
            let differ = log.iter().zip(first).position(|(a, b)| a != b);
            assert!(
                log.len() == first.len() && differ.is_none(),
                "seed {}: replica {i} did not converge ({} vs {} entries, first difference at {differ:?})",
                self.seed,
                log.len(),
                first.len()
            );
        }
        assert!(
            self.committed.contains(&target),
            "seed {}: nothing was chosen after healing; replicas (leader?, ballot, first unchosen): {:?}",
            self.seed,
            self.nodes
                .iter()
                .flatten()
                .map(|n| (n.is_leader(), n.ballot(), n.first_unchosen()))
                .collect::<Vec<_>>()
        );
        let applied: BTreeSet<u64> = first
            .iter()
            .filter_map(|v| v.data().map(batch_id))
            .collect();
        for b in &self.committed {
            assert!(
                applied.contains(b),
                "seed {}: a committed batch is missing from the log",
                self.seed
            );
        }
        assert_eq!(
            first.len(),
            self.chosen.len(),
            "seed {}: the log has gaps",
            self.seed
        );
        // Every chosen batch comes after the batch it depends on (what its
        // proposer had in memory when it proposed it).
        let mut slot_of = BTreeMap::new();
        for (&s, v) in &self.chosen {
            if let Some(b) = v.data() {
                slot_of.entry(batch_id(b)).or_insert(s);
            }
        }
        for (&s, v) in &self.chosen {
            if let Some(b) = v.data() {
                let dep = batch_dep(b);
                assert!(
                    dep == 0 || slot_of.get(&dep).is_some_and(|&d| d < s),
                    "seed {}: the batch in slot {s} depends on batch {dep}, which was not chosen before it",
                    self.seed
                );
            }
        }
        // A leadership's batch is chosen only after the batch it
        // proposed before it: a batch is never applied without the
        // previous one, whose transactions its own may have read from (a
        // lost batch filled with a no-op under a chosen later batch of the
        // same leader is the failure).
        for (&s, v) in &self.chosen {
            if let Value::Batch {
                origin,
                first: false,
                ..
            } = v
            {
                let before = self.chosen.get(&(s - 1)).and_then(Value::origin);
                assert_eq!(
                    before,
                    Some(*origin),
                    "seed {}: slot {s} holds a batch of leadership {origin:?}, but slot {} does not (the leadership's previous batch was lost)",
                    self.seed,
                    s - 1
                );
            }
        }
    }
}

/// Runs one seed; returns how many snapshots were installed, and at how
/// many steps a learner led.
fn run(seed: u64, voters: u32, learners: u32, standby: bool, steps: u32) -> (u64, u64) {
    let mut sim = Sim::new(seed, voters, learners, standby);
    for _ in 0..steps {
        sim.step();
    }
    sim.heal();
    (sim.installed, sim.learner_led)
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![s];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    (1..=n).collect()
}

fn run_all(voters: u32, learners: u32, standby: bool, steps: u32) {
    let seeds = seeds();
    let (mut installed, mut learner_led) = (0, 0);
    for &seed in &seeds {
        let result = std::panic::catch_unwind(|| run(seed, voters, learners, standby, steps));
        match result {
            Ok((n, l)) => {
                installed += n;
                learner_led += l;
            }
            Err(e) => {
                eprintln!(
                    "failing seed: SIM_SEED={seed} ({voters} voters, {learners} learners, standby: {standby})"
                );
                std::panic::resume_unwind(e);
            }
        }
    }
    // The snapshot path (and a standby learner's leadership) must be
    // exercised, not merely present.
    if seeds.len() >= 20 {
        assert!(installed > 0, "no run installed a snapshot");
        assert!(!standby || learner_led > 0, "no standby learner ever led");
        if !standby {
            assert_eq!(learner_led, 0, "a learner led without being standby");
        }
    }
    eprintln!(
        "{} seeds, {installed} snapshots installed, a learner led at {learner_led} steps",
        seeds.len()
    );
}

#[test]
fn three_voters_agree_and_converge_under_faults() {
    run_all(3, 0, false, 400);
}

#[test]
fn five_voters_and_a_learner_agree_and_converge_under_faults() {
    run_all(5, 1, false, 300);
}

#[test]
fn three_voters_and_a_standby_learner_agree_and_converge_under_faults() {
    run_all(3, 1, true, 300);
}

#[test]
fn a_single_replica_chooses_at_once() {
    let mut sim = Sim::new(7, 1, 0, false);
    sim.faults = false;
    for _ in 0..100 {
        sim.step();
    }
    assert!(sim.nodes[0].as_ref().unwrap().is_leader());
    assert!(!sim.committed.is_empty());
    sim.heal();
}
