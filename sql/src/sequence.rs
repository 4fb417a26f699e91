//! Sequence values: `nextval`, `currval`, `lastval`, `setval`.
//!
//! As in PostgreSQL, sequences are not transactional: a value handed out
//! stays used even if the transaction that took it rolls back, and two
//! transactions taking values never conflict. Each node takes a block of
//! `CACHE` values (32 unless the sequence says otherwise) in a small
//! transaction of its own, committed durably before any of them is handed
//! out, and serves `nextval` from that block in memory; so a sequence is
//! not a hot key even when every session of every node inserts with it.
//! Values are unique; they increase within a node but interleave between
//! nodes, and the rest of a node's block is skipped when the node restarts
//! (PostgreSQL with `CACHE` behaves alike).

use std::collections::HashMap;
use std::sync::Arc;

use kv::{Error, ErrorKind, Result, bail, keys};
use txn::{Db, Placement};

use crate::catalog::{Sequence, sequence_counter_key};

/// Values this session took, for `currval` and `lastval`.
#[derive(Debug, Default)]
pub struct SessionSequences {
    /// The last value of each sequence, by name.
    current: HashMap<String, i64>,
    /// The last value taken from any sequence.
    last: Option<i64>,
}

impl SessionSequences {
    /// `currval(name)`: 55000 before this session took a value.
    pub fn currval(&self, name: &str) -> Result<i64> {
        self.current.get(name).copied().ok_or_else(|| {
            Error::new(
                ErrorKind::ObjectNotInPrerequisiteState,
                format!("currval of sequence \"{name}\" is not yet defined in this session"),
            )
        })
    }

    /// `lastval()`.
    pub fn lastval(&self) -> Result<i64> {
        self.last.ok_or_else(|| {
            Error::new(
                ErrorKind::ObjectNotInPrerequisiteState,
                "lastval is not yet defined in this session",
            )
        })
    }

    fn took(&mut self, name: &str, v: i64) {
        self.current.insert(name.to_string(), v);
        self.last = Some(v);
    }
}

/// How many values a node takes at a time when the sequence does not say.
pub const DEFAULT_CACHE: i64 = 32;

fn counter_placement(key: &[u8]) -> Placement {
    Placement::Partitioned(keys::partition_hash(key))
}

/// The stored counter: the next value not yet handed to any node, as a
/// 16-byte big-endian i128 (it may step past the sequence's bounds).
fn decode_counter(bytes: &[u8]) -> Result<i128> {
    Ok(i128::from_be_bytes(bytes.try_into().map_err(|_| {
        Error::internal("corrupt sequence counter")
    })?))
}

fn exhausted(seq: &Sequence) -> Error {
    let (word, bound) = if seq.increment > 0 {
        ("maximum", seq.max)
    } else {
        ("minimum", seq.min)
    };
    Error::new(
        ErrorKind::SequenceGeneratorLimitExceeded,
        format!(
            "nextval: reached {word} value of sequence \"{}\" ({bound})",
            seq.name
        ),
    )
}

/// Runs `f` in a transaction of its own, committed durably, retrying
/// conflicts with other nodes taking blocks at the same moment.
fn own_transaction<R>(db: &Arc<Db>, mut f: impl FnMut(&mut txn::Txn) -> Result<R>) -> Result<R> {
    let mut attempt = 0u32;
    loop {
        let mut t = db.begin();
        let result = f(&mut t).and_then(|r| t.commit().map(|_| r));
        match result {
            Err(e) if e.is_retryable() && attempt < 50 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_micros(
                    100 * u64::from(attempt.min(20)),
                ));
            }
            other => return other,
        }
    }
}

/// Takes the next block of values for this node: (first value, count).
fn take_block(db: &Arc<Db>, seq: &Sequence) -> Result<(i64, i64)> {
    let key = sequence_counter_key(seq.id);
    let placement = counter_placement(&key);
    own_transaction(db, |t| {
        let mut next = match t.get(&key, placement)? {
            Some(b) => decode_counter(&b)?,
            None => seq.start as i128,
        };
        let (min, max, inc) = (seq.min as i128, seq.max as i128, seq.increment as i128);
        if next > max || next < min {
            if !seq.cycle {
                return Err(exhausted(seq));
            }
            next = if inc > 0 { min } else { max };
        }
        // As many values as fit before the bound, at most `cache`.
        let room = if inc > 0 {
            (max - next) / inc + 1
        } else {
            (next - min) / -inc + 1
        };
        let count = room.min(seq.cache.max(1) as i128);
        let after = next + inc * count;
        t.put(key.clone(), Arc::from(&after.to_be_bytes()[..]), placement);
        Ok((next as i64, count as i64))
    })
}

/// `nextval(seq)`: the next value, from this node's block.
pub fn nextval(db: &Arc<Db>, seq: &Sequence, session: &mut SessionSequences) -> Result<i64> {
    let id = seq.id as u64;
    let taken = {
        let mut blocks = db.counter_blocks.lock().unwrap_or_else(|p| p.into_inner());
        match blocks.get_mut(&id) {
            Some((next, left)) if *left > 0 => {
                let v = *next;
                *left -= 1;
                *next = v.wrapping_add(seq.increment);
                Some(v)
            }
            _ => None,
        }
    };
    let v = match taken {
        Some(v) => v,
        None => {
            let (first, count) = take_block(db, seq)?;
            let mut blocks = db.counter_blocks.lock().unwrap_or_else(|p| p.into_inner());
            blocks.insert(id, (first.wrapping_add(seq.increment), count - 1));
            first
        }
    };
    session.took(&seq.name, v);
    Ok(v)
}

/// `setval(seq, value, is_called)`: the next `nextval` anywhere returns
/// `value` (or the one after it when `is_called`). This node's block is
/// dropped; other nodes finish theirs first.
pub fn setval(
    db: &Arc<Db>,
    seq: &Sequence,
    value: i64,
    is_called: bool,
    session: &mut SessionSequences,
) -> Result<i64> {
    if value < seq.min || value > seq.max {
        bail!(
            NumericOutOfRange,
            "setval: value {value} is out of bounds for sequence \"{}\" ({}..{})",
            seq.name,
            seq.min,
            seq.max
        );
    }
    let key = sequence_counter_key(seq.id);
    let placement = counter_placement(&key);
    let next = if is_called {
        value as i128 + seq.increment as i128
    } else {
        value as i128
    };
    own_transaction(db, |t| {
        t.put(key.clone(), Arc::from(&next.to_be_bytes()[..]), placement);
        Ok(())
    })?;
    db.counter_blocks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(seq.id as u64));
    if is_called {
        session.took(&seq.name, value);
    }
    Ok(value)
}

/// What `CREATE SEQUENCE` says (absent: PostgreSQL's default).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `INCREMENT BY`.
    pub increment: Option<i64>,
    /// `MINVALUE`.
    pub min: Option<i64>,
    /// `MAXVALUE`.
    pub max: Option<i64>,
    /// `START WITH`.
    pub start: Option<i64>,
    /// `CACHE`.
    pub cache: Option<i64>,
    /// `CYCLE`.
    pub cycle: bool,
}

/// Checks and completes a sequence definition from `CREATE SEQUENCE`'s
/// options (PostgreSQL's defaults: ascending from 1 up to the type's
/// maximum, descending from -1 down to its minimum).
pub fn define(name: String, options: Options, type_max: i64) -> Result<Sequence> {
    let Options {
        increment,
        min,
        max,
        start,
        cache,
        cycle,
    } = options;
    let increment = increment.unwrap_or(1);
    if increment == 0 {
        bail!(InvalidParameterValue, "INCREMENT must not be zero");
    }
    let min = min.unwrap_or(if increment > 0 { 1 } else { -type_max - 1 });
    let max = max.unwrap_or(if increment > 0 { type_max } else { -1 });
    if min >= max {
        bail!(
            InvalidParameterValue,
            "MINVALUE ({min}) must be less than MAXVALUE ({max})"
        );
    }
    let start = start.unwrap_or(if increment > 0 { min } else { max });
    if start < min {
        bail!(
            InvalidParameterValue,
            "START value ({start}) cannot be less than MINVALUE ({min})"
        );
    }
    if start > max {
        bail!(
            InvalidParameterValue,
            "START value ({start}) cannot be greater than MAXVALUE ({max})"
        );
    }
    let cache = cache.unwrap_or(DEFAULT_CACHE);
    if cache < 1 {
        bail!(
            InvalidParameterValue,
            "CACHE ({cache}) must be greater than zero"
        );
    }
    Ok(Sequence {
        id: 0,
        name,
        start,
        increment,
        min,
        max,
        cycle,
        cache,
        owned_by: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(cache: i64, max: i64, cycle: bool) -> Sequence {
        let options = Options {
            max: Some(max),
            cache: Some(cache),
            cycle,
            ..Options::default()
        };
        let mut s = define("s".into(), options, i64::MAX).unwrap();
        s.id = 7;
        s
    }

    #[test]
    fn values_are_unique_across_nodes_and_blocks() {
        // Two nodes' caches over the same shards: two Dbs would not share
        // the counter, so take blocks alternately from one Db with the
        // cache emptied in between, as another node would.
        let db = Db::in_process(2);
        let s = seq(3, i64::MAX, false);
        let mut session = SessionSequences::default();
        let mut seen = std::collections::HashSet::new();
        for i in 0..20 {
            if i % 4 == 0 {
                db.counter_blocks.lock().unwrap().clear();
            }
            assert!(seen.insert(nextval(&db, &s, &mut session).unwrap()));
        }
        assert_eq!(session.currval("s").unwrap(), session.lastval().unwrap());
    }

    #[test]
    fn bounds_cycle_and_setval() {
        let db = Db::in_process(1);
        let mut session = SessionSequences::default();
        let s = seq(2, 3, false);
        let got: Vec<i64> = (0..3)
            .map(|_| nextval(&db, &s, &mut session).unwrap())
            .collect();
        assert_eq!(got, [1, 2, 3]);
        let e = nextval(&db, &s, &mut session).unwrap_err();
        assert_eq!(e.kind, ErrorKind::SequenceGeneratorLimitExceeded);
        let mut c = seq(2, 2, true);
        c.id = 8;
        let got: Vec<i64> = (0..5)
            .map(|_| nextval(&db, &c, &mut session).unwrap())
            .collect();
        assert_eq!(got, [1, 2, 1, 2, 1]);
        setval(&db, &s, 2, false, &mut session).unwrap();
        assert_eq!(nextval(&db, &s, &mut session).unwrap(), 2);
        assert!(setval(&db, &s, 9, true, &mut session).is_err());
        assert_eq!(
            SessionSequences::default().currval("s").unwrap_err().kind,
            ErrorKind::ObjectNotInPrerequisiteState
        );
    }
}
