//! The cluster configuration file (TOML).
//!
//! ```toml
//! consensus = "paxos"          # or "raft" (openraft)
//! heartbeat_ms = 50            # a leader's heartbeat interval
//! election_timeout_ms = 500    # silence before a follower stands
//! sync = "group"               # as `mako start --sync`
//! shards = 1                   # partitions of the data (with one group;
//!                              # with several, each lists its own)
//! retain_slots = 10000         # log kept for lagging replicas; one
//!                              # further behind is sent a snapshot
//! batch_max_entries = 10000    # log entries per replicated batch, at most
//! batch_delay_ms = 0           # a batch waits this long for more entries
//! batch_max_in_flight = 1      # while this many batches of a stream are
//!                              # replicated, the next waits (up to 1 ms)
//! streams = 1                  # replicated logs the leader spreads its
//!                              # batches over (fixed once the data
//!                              # directories exist)
//! watermark_gossip_ms = 1      # with several groups: how often a leader
//!                              # reports its watermarks to the others
//! lock_timeout_ms = 5000       # with several groups: locks a coordinator
//!                              # took and abandoned before Validate go then
//! commit = "speculative"      # with several groups: Mako's protocol, or
//!                              # "2pc-paxos" (the baseline it is measured
//!                              # against; slower, for benchmarks)
//! secret_file = "c.secret"     # the cluster's shared secret (relative to
//!                              # the config file; default: the config
//!                              # file's name with the extension .secret)
//!
//! [[datacenter]]
//! name = "us"
//! [[datacenter]]
//! name = "eu"
//!
//! [[latency]]                  # one-way latency to inject, both ways
//! between = ["us", "eu"]
//! ms = 25
//!
//! [[node]]
//! name = "n1"
//! dc = "us"
//! listen = "127.0.0.1:5433"    # PostgreSQL clients
//! repl = "127.0.0.1:6433"      # replication between nodes
//! data_dir = "mako-data/n1"    # relative to the config file
//!
//! [[group]]                    # a replica group (shards and their replicas)
//! name = "g1"
//! shards = [0, 1]              # the (global) shards it holds; with one
//!                              # group, default: all of them
//! leader = "n1"                # the preferred leader
//! followers = ["n2", "n3"]
//! learners = []                # receive everything, never vote; those in
//!                              # the leader's dc take over first (Paxos)
//! standby_learners = true      # false: learners never lead
//! ```
//!
//! With several `[[group]]`s, the shards are numbered across the cluster
//! (0 to N-1, each held by exactly one group; N is the length of every
//! vector clock), and each node belongs to one group. A transaction may
//! touch the shards of any group: its node coordinates it, reading other
//! groups' shards from their leaders and certifying it with them (see
//! `crate::rpc`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A parsed, checked cluster configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `paxos` (ours) or `raft` (openraft).
    #[serde(default = "default_consensus")]
    pub consensus: String,
    /// A leader's heartbeat interval.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    /// Silence from the leader before a follower stands for election.
    #[serde(default = "default_election")]
    pub election_timeout_ms: u64,
    /// When a commit is acknowledged relative to each replica's disk.
    #[serde(default = "default_sync")]
    pub sync: String,
    /// Partitions of the data (`mako start --shards`), with one group
    /// that does not list its shards. With several groups, the shards
    /// they list (and this, if given, must be their number).
    #[serde(default)]
    pub shards: Option<u16>,
    /// Applied log slots each replica keeps for replicas that lag behind;
    /// one further behind is sent a snapshot of the data instead (raft:
    /// a snapshot is built every this many entries).
    #[serde(default = "default_retain_slots")]
    pub retain_slots: u64,
    /// At most this many log entries in one replicated batch (one slot).
    #[serde(default = "default_batch_max_entries")]
    pub batch_max_entries: usize,
    /// A batch waits up to this long for more entries before it is
    /// replicated (0: it goes at once with whatever queued meanwhile).
    #[serde(default)]
    pub batch_delay_ms: u64,
    /// While this many batches of a stream are replicated and not yet
    /// chosen, the next waits for one (up to a millisecond), gathering
    /// the commits that arrive meanwhile.
    #[serde(default = "default_batch_max_in_flight")]
    pub batch_max_in_flight: usize,
    /// Streams (replicated logs) per replica group: the leader spreads
    /// its batches over them, each with its own Multi-Paxos instance,
    /// disk writes and messages, and followers merge them (Mako's
    /// per-worker streams). With openraft, one raft instance per stream.
    #[serde(default = "default_streams")]
    pub streams: u16,
    /// With several groups: how often a group's leader reports its
    /// shards' durable watermarks to the other groups (a cross-group
    /// commit's reply waits for them).
    #[serde(default = "default_gossip")]
    pub watermark_gossip_ms: u64,
    /// With several groups: how long a participant keeps a transaction's
    /// locks when its coordinator does not validate (it died or lost
    /// touch).
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout_ms: u64,
    /// With several groups: how transactions across groups commit,
    /// "speculative" (Mako's protocol) or "2pc-paxos" (two-phase commit
    /// over Paxos, the baseline Mako is measured against; see
    /// `txn::coord::CommitProtocol`). Every node must say the same.
    #[serde(default = "default_commit")]
    pub commit: String,
    /// The file holding the cluster's shared secret, which replication
    /// connections prove they hold (`repl::net::ClusterKey`); relative to
    /// the config file. Default: the config file's path with the
    /// extension `.secret`.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The datacenters.
    #[serde(default, rename = "datacenter")]
    pub datacenters: Vec<Datacenter>,
    /// One-way latencies to inject between datacenters.
    #[serde(default)]
    pub latency: Vec<Latency>,
    /// The nodes.
    #[serde(default, rename = "node")]
    pub nodes: Vec<Node>,
    /// The replica groups.
    #[serde(default, rename = "group")]
    pub groups: Vec<Group>,
    /// The directory relative paths are resolved against.
    #[serde(skip)]
    pub base: PathBuf,
    /// The config file's path (empty when parsed from a string).
    #[serde(skip)]
    pub path: PathBuf,
}

/// A datacenter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datacenter {
    /// Its name.
    pub name: String,
}

/// A latency to inject between two datacenters (both directions).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// The two datacenters.
    pub between: [String; 2],
    /// One-way latency in milliseconds.
    pub ms: u64,
}

/// A node: one `mako` process.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Its name (`mako start --node NAME`).
    pub name: String,
    /// Its datacenter.
    pub dc: String,
    /// Where it listens for PostgreSQL clients.
    pub listen: SocketAddr,
    /// Where it listens for the other nodes.
    pub repl: SocketAddr,
    /// Its data directory (relative to the config file's directory).
    pub data_dir: PathBuf,
}

/// A replica group: one shard's data on several nodes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// The global shards it holds (default, with a single group: all).
    #[serde(default)]
    pub shards: Vec<u16>,
    /// The preferred leader (it stands for election first).
    pub leader: String,
    /// The other voting replicas.
    #[serde(default)]
    pub followers: Vec<String>,
    /// Replicas that receive every entry but never vote. With Paxos,
    /// those in the preferred leader's datacenter are standby learners:
    /// they take over first when the leader fails (without voting).
    #[serde(default)]
    pub learners: Vec<String>,
    /// Whether learners in the preferred leader's datacenter may lead
    /// (Paxos only).
    #[serde(default = "default_true")]
    pub standby_learners: bool,
}

impl Group {
    /// True when node `name` is one of its replicas.
    pub fn has_member(&self, name: &str) -> bool {
        self.leader == name
            || self.followers.iter().any(|f| f == name)
            || self.learners.iter().any(|l| l == name)
    }

    /// Its members: the preferred leader, the followers, the learners.
    pub fn members(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.leader)
            .chain(&self.followers)
            .chain(&self.learners)
    }
}

fn default_gossip() -> u64 {
    1
}

fn default_lock_timeout() -> u64 {
    5_000
}

fn default_commit() -> String {
    "speculative".into()
}

fn default_true() -> bool {
    true
}
fn default_consensus() -> String {
    "paxos".into()
}
fn default_heartbeat() -> u64 {
    50
}
fn default_election() -> u64 {
    500
}
fn default_sync() -> String {
    "group".into()
}
fn default_batch_max_entries() -> usize {
    10_000
}

fn default_batch_max_in_flight() -> usize {
    kv::persist::Batching::default().max_in_flight
}

fn default_streams() -> u16 {
    1
}

fn default_retain_slots() -> u64 {
    10_000
}

impl ClusterConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<ClusterConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read cluster config {}: {e}", path.display()))?;
        let mut cfg = ClusterConfig::parse(&text)
            .map_err(|e| format!("cluster config {}: {e}", path.display()))?;
        cfg.base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        cfg.path = path.to_path_buf();
        Ok(cfg)
    }

    /// Where the cluster's shared secret is kept.
    pub fn secret_path(&self) -> PathBuf {
        match &self.secret_file {
            Some(p) => self.base.join(p),
            None if self.path.file_name().is_some() => self.path.with_extension("secret"),
            None => self.base.join("cluster.secret"),
        }
    }

    /// Reads the cluster's shared secret: the file's content without
    /// surrounding white space, at least 16 bytes, readable by its owner
    /// only (as PostgreSQL requires of its key files).
    pub fn load_key(&self) -> Result<repl::net::ClusterKey, String> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.secret_path();
        let how = format!(
            "every node of the cluster needs the same secret there; create it once with\n  \
             head -c 32 /dev/urandom | base64 > {0} && chmod 600 {0}\n\
             and copy it to the other nodes (mako local-cluster creates it when it is missing)",
            path.display()
        );
        let meta = std::fs::metadata(&path).map_err(|e| {
            format!(
                "cannot read the cluster secret {}: {e}\n{how}",
                path.display()
            )
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "the cluster secret {} is readable by others than its owner (mode {:o}); \
                 chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            ));
        }
        let text = std::fs::read(&path)
            .map_err(|e| format!("cannot read the cluster secret {}: {e}", path.display()))?;
        repl::net::ClusterKey::new(text.trim_ascii())
            .map_err(|e| format!("{e} ({})\n{how}", path.display()))
    }

    /// Creates the secret file with a random secret when there is none;
    /// true when it did.
    pub fn create_secret_if_missing(&self) -> Result<bool, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.secret_path();
        let bytes: [u8; 32] = rand::random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(format!("{hex}\n").as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(format!("cannot create {}: {e}", path.display())),
        }
    }

    /// Parses and checks a configuration text.
    pub fn parse(text: &str) -> Result<ClusterConfig, String> {
        let cfg: ClusterConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.check()?;
        Ok(cfg)
    }

    /// How transactions across groups commit (the `commit` setting).
    pub fn commit_protocol(&self) -> Result<txn::coord::CommitProtocol, String> {
        txn::coord::CommitProtocol::parse(&self.commit).ok_or_else(|| {
            format!(
                "unknown commit protocol {:?} (use \"speculative\" or \"2pc-paxos\")",
                self.commit
            )
        })
    }

    fn check(&self) -> Result<(), String> {
        match self.consensus.as_str() {
            "paxos" | "raft" => {}
            other => {
                return Err(format!(
                    "unknown consensus {other:?} (use \"paxos\" or \"raft\")"
                ));
            }
        }
        self.sync.parse::<kv::persist::SyncMode>()?;
        self.commit_protocol()?;
        if !(1..=64).contains(&self.streams) {
            return Err(format!(
                "streams = {} is out of range (1 to 64)",
                self.streams
            ));
        }
        if self.heartbeat_ms == 0 || self.election_timeout_ms < 2 * self.heartbeat_ms {
            return Err(format!(
                "election_timeout_ms ({}) must be at least twice heartbeat_ms ({}), which must be positive",
                self.election_timeout_ms, self.heartbeat_ms
            ));
        }
        if self.shards == Some(0) {
            return Err("shards must be at least 1".into());
        }
        if self.batch_max_entries == 0 || self.batch_max_entries >= 1 << 24 {
            return Err(format!(
                "batch_max_entries ({}) must be between 1 and 16777215",
                self.batch_max_entries
            ));
        }
        if self.batch_max_in_flight == 0 {
            return Err("batch_max_in_flight must be at least 1".into());
        }
        let dc_known = |dc: &str| self.datacenters.iter().any(|d| d.name == dc);
        for l in &self.latency {
            for dc in &l.between {
                if !dc_known(dc) {
                    return Err(format!("latency names unknown datacenter {dc:?}"));
                }
            }
        }
        if self.nodes.is_empty() {
            return Err("no [[node]] is defined".into());
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if !dc_known(&n.dc) {
                return Err(format!(
                    "node {:?} is in unknown datacenter {:?}",
                    n.name, n.dc
                ));
            }
            if self.nodes[..i].iter().any(|m| m.name == n.name) {
                return Err(format!("node {:?} is defined twice", n.name));
            }
            // Two nodes on one address would take each other's messages
            // (a node reading its own) or fail to start.
            let addrs = [n.listen, n.repl];
            if n.listen == n.repl
                || self.nodes[..i]
                    .iter()
                    .any(|m| addrs.contains(&m.listen) || addrs.contains(&m.repl))
            {
                return Err(format!(
                    "node {:?} uses an address ({} or {}) that another node or its own other \
                     address already uses",
                    n.name, n.listen, n.repl
                ));
            }
        }
        if self.groups.is_empty() {
            return Err("no [[group]] is defined".into());
        }
        for (gi, g) in self.groups.iter().enumerate() {
            if self.groups[..gi].iter().any(|o| o.name == g.name) {
                return Err(format!("group {:?} is defined twice", g.name));
            }
            let members: Vec<&String> = std::iter::once(&g.leader)
                .chain(&g.followers)
                .chain(&g.learners)
                .collect();
            for (i, m) in members.iter().enumerate() {
                if self.node(m).is_none() {
                    return Err(format!("group {:?} names unknown node {m:?}", g.name));
                }
                if members[..i].contains(m) {
                    return Err(format!("group {:?} names node {m:?} twice", g.name));
                }
                if let Some(other) = self.groups[..gi].iter().find(|o| o.has_member(m)) {
                    return Err(format!(
                        "node {m:?} is a member of groups {:?} and {:?}; a node belongs to one group",
                        other.name, g.name
                    ));
                }
            }
        }
        // The shards: 0 to N-1, each held by exactly one group.
        if self.groups.len() == 1 && self.groups[0].shards.is_empty() {
            return Ok(());
        }
        let mut holder: Vec<Option<&str>> = Vec::new();
        for g in &self.groups {
            if g.shards.is_empty() {
                return Err(format!(
                    "group {:?} lists no shards; with several groups each lists the shards it holds \
                     (shards = [0, 1], numbered across the cluster)",
                    g.name
                ));
            }
            for &s in &g.shards {
                let s = usize::from(s);
                if s >= 1024 {
                    return Err(format!(
                        "group {:?}: shard {s} is out of range (0 to 1023)",
                        g.name
                    ));
                }
                if holder.len() <= s {
                    holder.resize(s + 1, None);
                }
                if let Some(other) = holder[s] {
                    return Err(format!(
                        "shard {s} is listed by groups {other:?} and {:?}",
                        g.name
                    ));
                }
                holder[s] = Some(&g.name);
            }
        }
        if let Some(missing) = holder.iter().position(Option::is_none) {
            return Err(format!(
                "no group holds shard {missing}; the shards are numbered 0 to {} across the groups",
                holder.len() - 1
            ));
        }
        if let Some(n) = self.shards
            && usize::from(n) != holder.len()
        {
            return Err(format!(
                "shards = {n}, but the groups hold {} shards",
                holder.len()
            ));
        }
        Ok(())
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// A node's replica id (its position in the file, from 1).
    pub fn node_id(&self, name: &str) -> Option<u32> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .map(|i| i as u32 + 1)
    }

    /// The node with replica id `id`.
    pub fn node_by_id(&self, id: u32) -> Option<&Node> {
        self.nodes.get((id as usize).checked_sub(1)?)
    }

    /// The number of shards of the cluster (the length of vector
    /// clocks).
    pub fn shard_count(&self) -> usize {
        match self.groups.as_slice() {
            [only] if only.shards.is_empty() => usize::from(self.shards.unwrap_or(1)),
            groups => groups.iter().map(|g| g.shards.len()).sum(),
        }
    }

    /// The shards group `g` holds (ascending).
    pub fn group_shards(&self, g: &Group) -> Vec<usize> {
        if g.shards.is_empty() {
            return (0..self.shard_count()).collect();
        }
        let mut s: Vec<usize> = g.shards.iter().map(|&s| usize::from(s)).collect();
        s.sort_unstable();
        s
    }

    /// The group node `name` belongs to.
    pub fn group_of(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.has_member(name))
    }

    /// The first group (the only one, with a single group).
    pub fn group(&self) -> &Group {
        &self.groups[0]
    }

    /// The one-way latency to inject between two datacenters.
    pub fn latency(&self, a: &str, b: &str) -> Duration {
        if a == b {
            return Duration::ZERO;
        }
        self.latency
            .iter()
            .find(|l| {
                (l.between[0] == a && l.between[1] == b) || (l.between[0] == b && l.between[1] == a)
            })
            .map_or(Duration::ZERO, |l| Duration::from_millis(l.ms))
    }

    /// A node's data directory, resolved against the config's directory.
    pub fn data_dir(&self, node: &Node) -> PathBuf {
        if node.data_dir.is_absolute() {
            node.data_dir.clone()
        } else {
            self.base.join(&node.data_dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        heartbeat_ms = 20
        election_timeout_ms = 200
        [[datacenter]]
        name = "a"
        [[datacenter]]
        name = "b"
        [[latency]]
        between = ["a", "b"]
        ms = 25
        [[node]]
        name = "n1"
        dc = "a"
        listen = "127.0.0.1:5433"
        repl = "127.0.0.1:6433"
        data_dir = "d/n1"
        [[node]]
        name = "n2"
        dc = "b"
        listen = "127.0.0.1:5434"
        repl = "127.0.0.1:6434"
        data_dir = "d/n2"
        [[group]]
        name = "g"
        leader = "n1"
        followers = ["n2"]
    "#;

    #[test]
    fn parses_and_answers() {
        let c = ClusterConfig::parse(GOOD).unwrap();
        assert_eq!(c.node_id("n2"), Some(2));
        assert_eq!(c.node_by_id(1).unwrap().name, "n1");
        assert_eq!(c.latency("a", "b"), Duration::from_millis(25));
        assert_eq!(c.latency("b", "a"), Duration::from_millis(25));
        assert_eq!(c.latency("a", "a"), Duration::ZERO);
        assert_eq!(c.consensus, "paxos");
    }

    /// Learners in the preferred leader's datacenter are standby (they
    /// may lead, with its short election timeout), with Paxos only, unless
    /// turned off; the others are not.
    #[test]
    fn learners_in_the_leaders_datacenter_are_standby() {
        let with = |extra: &str, consensus: &str| {
            let text = format!(
                "consensus = \"{consensus}\"\n{}",
                GOOD.replace(
                    "[[group]]",
                    "[[node]]\nname = \"n3\"\ndc = \"a\"\nlisten = \"127.0.0.1:5435\"\n\
                     repl = \"127.0.0.1:6435\"\ndata_dir = \"d/n3\"\n\
                     [[node]]\nname = \"n4\"\ndc = \"b\"\nlisten = \"127.0.0.1:5436\"\n\
                     repl = \"127.0.0.1:6436\"\ndata_dir = \"d/n4\"\n[[group]]",
                )
                .replace(
                    "followers = [\"n2\"]",
                    &format!("followers = [\"n2\"]\nlearners = [\"n3\", \"n4\"]\n{extra}"),
                )
            );
            let c = ClusterConfig::parse(&text).unwrap();
            ["n1", "n2", "n3", "n4"].map(|n| {
                let o = crate::NodeOptions::from_config(&c, n, Box::new(|_| {})).unwrap();
                (o.standby, o.election.as_millis())
            })
        };
        assert_eq!(
            with("", "paxos"),
            [(false, 100), (false, 400), (true, 100), (false, 400)]
        );
        assert_eq!(
            with("standby_learners = false", "paxos").map(|(s, _)| s),
            [false; 4]
        );
        assert_eq!(with("", "raft").map(|(s, _)| s), [false; 4]);
    }

    /// Two groups: the shards are numbered across them, each node is in
    /// one, and a node's peers are every other node.
    #[test]
    fn several_groups_share_the_shards() {
        let two = GOOD.replace("followers = [\"n2\"]", "shards = [1, 0]")
            + "[[group]]\nname = \"h\"\nleader = \"n2\"\nshards = [2]\n";
        let c = ClusterConfig::parse(&two).unwrap();
        assert_eq!(c.shard_count(), 3);
        assert_eq!(c.group_shards(c.group_of("n1").unwrap()), vec![0, 1]);
        assert_eq!(c.group_of("n2").unwrap().name, "h");
        let o = crate::NodeOptions::from_config(&c, "n2", Box::new(|_| {})).unwrap();
        let layout = o.layout.unwrap();
        assert_eq!((o.shards, layout.mine), (3, 1));
        assert_eq!(layout.remote_shards(3), vec![true, true, false]);
        assert_eq!(crate::peers(&c, "n1").len(), 1);
        let bad = |from: &str, to: &str| ClusterConfig::parse(&two.replace(from, to)).unwrap_err();
        assert!(bad("shards = [2]", "shards = [1]").contains("listed by groups"));
        assert!(bad("shards = [2]", "shards = [3]").contains("no group holds shard 2"));
        assert!(bad("shards = [2]\n", "").contains("lists no shards"));
        assert!(bad("leader = \"n2\"", "leader = \"n1\"").contains("belongs to one group"));
        assert!(bad("heartbeat_ms = 20", "heartbeat_ms = 20\nshards = 4").contains("hold 3"));
    }

    /// The cluster files in testdata/clusters stay valid: 3 replicas per
    /// group over 3 datacenters 25 ms apart.
    #[test]
    fn the_sample_cluster_files_parse() {
        for (text, groups) in [
            (include_str!("../../testdata/clusters/two-groups.toml"), 2),
            (include_str!("../../testdata/clusters/three-groups.toml"), 3),
        ] {
            let c = ClusterConfig::parse(text).unwrap();
            assert_eq!((c.groups.len(), c.shard_count()), (groups, 2 * groups));
            assert!(c.groups.iter().all(|g| g.members().count() == 3));
            assert_eq!(c.latency("a", "c"), Duration::from_millis(25));
        }
    }

    #[test]
    fn mistakes_are_explained() {
        let bad = |from: &str, to: &str| {
            let text = GOOD.replacen(from, to, 1);
            ClusterConfig::parse(&text).unwrap_err()
        };
        assert!(bad("followers = [\"n2\"]", "followers = [\"n9\"]").contains("unknown node"));
        assert!(bad("dc = \"b\"", "dc = \"z\"").contains("unknown datacenter"));
        assert!(bad("heartbeat_ms = 20", "consensus = \"zab\"").contains("unknown consensus"));
        assert!(
            bad("heartbeat_ms = 20", "heartbeat_ms = 20\ncommit = \"3pc\"")
                .contains("unknown commit protocol")
        );
        assert!(
            bad(
                "heartbeat_ms = 20",
                "heartbeat_ms = 20\nbatch_max_entries = 0"
            )
            .contains("batch_max_entries")
        );
        assert!(
            bad("heartbeat_ms = 20", "heartbeat_ms = 20\nstreams = 0").contains("out of range")
        );
        assert!(bad("election_timeout_ms = 200", "election_timeout_ms = 30").contains("twice"));
        assert!(bad("name = \"n2\"", "name = \"n1\"").contains("twice"));
        assert!(
            bad("6434", "6433").contains("address"),
            "a repl address used twice"
        );
        assert!(bad("ms = 25", "ms = 25\nbogus = 1").contains("bogus"));
        assert!(bad("listen = \"127.0.0.1:5433\"", "listen = \"nowhere\"").contains("listen"));
    }
}
