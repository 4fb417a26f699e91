//! A replica's replay of chosen stream values (DESIGN.md §1.2-§1.4).
//!
//! Streams deliver their chosen values in slot order, but a shard's clock
//! order is not slot order: two commits on one shard take their clock
//! values in one order and may reach the log in the other, and entries of
//! different streams come in any order. So a replica applies each shard's
//! entries in *clock order*, and only *stable* ones: an entry whose
//! vector clock is covered by the replica's vector watermark, a shard's
//! watermark being the clock value up to which every value is accounted
//! for by a chosen entry (Mako §4.3: VC ≤ VW). A replica therefore never
//! holds a transaction without the ones it read from, and shards are
//! applied in parallel, each in its own order.
//!
//! Clock order is each key's install order (a committer takes its clock
//! value while it holds the key's lock, after the previous writer released
//! it), so applying in clock order needs no version comparison. Where
//! Mako compares versions on replay (Thomas's write rule), the checkpoint
//! here records per shard the clock value through which every entry is in
//! `data`, and recovery skips the entries at or below it when the stream
//! delivers them again: the same rule, exact also for deletes, which
//! leave no version behind in `data` to compare with.
//!
//! A new leader closes its predecessors' entries before it serves
//! ([`Close`]): once every stream has delivered the slots below the
//! close's `through`, the entries of earlier leaders that are still
//! unstable are dropped (their transactions read from, or were, commits
//! that were never chosen, so none was acknowledged), and every shard's
//! watermark moves to the close's `clock_max`, above which the new
//! leader's clock values start.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::error::Result;
use crate::log::{Close, LogEntry, StreamValue, corrupt};

/// The replay state of a replica's shards and streams.
pub(super) struct Replay {
    shards: Vec<ShardReplay>,
    streams: Vec<StreamReplay>,
    /// Closes delivered but not processed: they wait for every stream to
    /// deliver the slots below their `through`.
    closes: VecDeque<Delivered<Close>>,
    /// The last close processed: every entry after it (in its stream, at
    /// or beyond its `through`) has a clock value above its `clock_max`.
    last_close: Option<Close>,
    /// Per shard: held by another replica group. Its watermark is that
    /// group's, as it reports it ([`Replay::raise`]); this group's closes
    /// never move it (a close knows nothing of another group's clocks).
    remote: Vec<bool>,
}

/// One shard's replay.
#[derive(Default)]
struct ShardReplay {
    /// Every clock value up to this is accounted for: by a delivered
    /// entry, or given up by a close. The shard's part of the replica's
    /// vector watermark.
    accounted: u64,
    /// Clock values above `accounted` of delivered entries.
    seen: BTreeSet<u64>,
    /// The highest clock value of this shard that any delivered entry
    /// names (its own, or in its vector clock).
    named: u64,
    /// Every entry with a clock value up to this is applied (or dropped).
    done: u64,
    /// Delivered entries not applied yet, by clock value.
    waiting: BTreeMap<u64, Delivered<(LogEntry, bool)>>,
}

/// Where a delivered item came from.
struct Delivered<T> {
    stream: usize,
    slot: u64,
    item: T,
}

/// One stream's replay.
#[derive(Default)]
struct StreamReplay {
    /// The next slot expected (every slot below it was delivered).
    next: u64,
    /// Delivered slots with items not yet processed, and how many.
    outstanding: BTreeMap<u64, usize>,
}

impl StreamReplay {
    fn finish(&mut self, slot: u64) {
        if let Some(n) = self.outstanding.get_mut(&slot) {
            *n -= 1;
            if *n == 0 {
                self.outstanding.remove(&slot);
            }
        }
    }
}

/// What a delivery made ready.
#[derive(Default)]
pub(super) struct Ready {
    /// Per shard, the entries to apply now, in this order, each with
    /// `own` (proposed by this node, which installed it already).
    pub apply: Vec<Vec<(LogEntry, bool)>>,
    /// Per shard, a clock value a close moved the watermark to (0: none).
    pub jumps: Vec<u64>,
    /// Entries a close dropped.
    pub dropped: usize,
    /// The closes processed, as `(leader, epoch)`.
    pub closed: Vec<(u64, u64)>,
}

impl Replay {
    /// A replay of `shards` shards and `streams` streams whose checkpoint
    /// holds every entry up to `done[shard]` and every slot below
    /// `positions[stream]`.
    pub fn new(done: &[u64], positions: &[u64]) -> Replay {
        Replay {
            shards: done
                .iter()
                .map(|&d| ShardReplay {
                    accounted: d,
                    named: d,
                    done: d,
                    ..ShardReplay::default()
                })
                .collect(),
            streams: positions
                .iter()
                .map(|&p| StreamReplay {
                    next: p,
                    ..StreamReplay::default()
                })
                .collect(),
            closes: VecDeque::new(),
            last_close: None,
            remote: vec![false; done.len()],
        }
    }

    /// Marks the shards another replica group holds (see `remote`).
    pub fn set_remote(&mut self, remote: &[bool]) {
        for (r, &is) in self.remote.iter_mut().zip(remote) {
            *r = is;
        }
    }

    /// Another group reports that every clock value of its shard `shard`
    /// up to `w` is durable there: entries depending on them become
    /// stable here.
    pub fn raise(&mut self, shard: usize, w: u64) -> Ready {
        if let Some(sh) = self.shards.get_mut(shard)
            && self.remote[shard]
            && w > sh.accounted
        {
            sh.accounted = w;
            sh.seen = sh.seen.split_off(&(w + 1));
            sh.done = sh.done.max(w);
        }
        self.ready()
    }

    /// Delivered entries not applied yet (they wait for what they depend
    /// on: earlier clock values, or another group's watermark).
    pub fn waiting(&self) -> usize {
        self.shards.iter().map(|s| s.waiting.len()).sum()
    }

    /// Per shard: every entry up to this clock value is applied or dropped.
    pub fn done(&self) -> Vec<u64> {
        self.shards.iter().map(|s| s.done).collect()
    }

    /// Per stream: every slot below this is fully processed.
    pub fn positions(&self) -> Vec<u64> {
        self.streams
            .iter()
            .map(|s| s.outstanding.keys().next().copied().unwrap_or(s.next))
            .collect()
    }

    /// The vector watermark: per shard, every clock value up to it is
    /// accounted for.
    pub fn watermark(&self) -> Vec<u64> {
        self.shards.iter().map(|s| s.accounted).collect()
    }

    /// Per shard, the highest clock value any delivered entry names.
    pub fn named(&self) -> Vec<u64> {
        self.shards
            .iter()
            .map(|s| s.named.max(s.accounted))
            .collect()
    }

    /// Per stream, the next slot expected.
    #[cfg(test)]
    pub fn next_slots(&self) -> Vec<u64> {
        self.streams.iter().map(|s| s.next).collect()
    }

    /// Stream `stream` chose `value` (`None`: a no-op) for `slot`; `own`:
    /// this node proposed it. Slots come in order per stream; one already
    /// delivered (a restart delivers from the checkpoint's position) is
    /// ignored. An entry at or below its shard's `done` is in the
    /// checkpoint already and is skipped. A value naming a shard or a
    /// stream this replica does not have, or a clock value chosen twice,
    /// is refused whole: the replicas disagree, and going on would
    /// diverge.
    pub fn deliver(
        &mut self,
        stream: usize,
        slot: u64,
        value: Option<StreamValue>,
        own: bool,
    ) -> Result<Ready> {
        let shards = self.shards.len();
        let Some(st) = self.streams.get_mut(stream) else {
            return Err(corrupt(format!(
                "slot {slot} of stream {stream} chosen on a replica of {} streams",
                self.streams.len()
            )));
        };
        if slot < st.next {
            return Ok(self.ready());
        }
        match value {
            None => st.next = slot + 1,
            Some(StreamValue::Batch(entries)) => {
                let mut batch_clocks = std::collections::HashSet::new();
                for e in &entries {
                    if e.shard >= shards || e.vc.entries().len() != shards {
                        return Err(corrupt(format!(
                            "the batch chosen for slot {slot} names shard {} of {} on a node \
                             with {shards} shards",
                            e.shard,
                            e.vc.entries().len()
                        )));
                    }
                    let sh = &self.shards[e.shard];
                    let c = e.clock();
                    // A later leader's entry below the last close's
                    // clock_max would be skipped as applied: refused
                    // loudly instead (a bug, never expected).
                    if let Some(last) = &self.last_close
                        && slot >= last.through.get(stream).copied().unwrap_or(0)
                        && c <= last.clock_max[e.shard]
                    {
                        return Err(corrupt(format!(
                            "slot {slot} of stream {stream} holds clock value {c} of shard {}, \
                             which a close (at or below {}) gave up",
                            e.shard, last.clock_max[e.shard]
                        )));
                    }
                    let again = !batch_clocks.insert((e.shard, c));
                    if c > sh.done && (again || c <= sh.accounted || sh.seen.contains(&c)) {
                        let before = match sh.waiting.get(&c) {
                            Some(d) => format!(
                                "first by transaction {} in slot {} of stream {} ({:?}, epoch {}, {} writes)",
                                d.item.0.txn,
                                d.slot,
                                d.stream,
                                d.item.0.vc,
                                d.item.0.epoch,
                                d.item.0.writes.len()
                            ),
                            None => format!(
                                "at or below the watermark {} (applied through {})",
                                sh.accounted, sh.done
                            ),
                        };
                        return Err(corrupt(format!(
                            "clock value {c} of shard {} is chosen twice: {before}, again by \
                             transaction {} in slot {slot} of stream {stream} ({:?}, epoch {}, {} writes)",
                            e.shard,
                            e.txn,
                            e.vc,
                            e.epoch,
                            e.writes.len()
                        )));
                    }
                }
                st.next = slot + 1;
                for e in entries {
                    for (sh, &c) in self.shards.iter_mut().zip(e.vc.entries()) {
                        sh.named = sh.named.max(c);
                    }
                    let sh = &mut self.shards[e.shard];
                    let c = e.clock();
                    if c <= sh.done {
                        continue;
                    }
                    sh.seen.insert(c);
                    sh.waiting.insert(
                        c,
                        Delivered {
                            stream,
                            slot,
                            item: (e, own),
                        },
                    );
                    *self.streams[stream].outstanding.entry(slot).or_default() += 1;
                }
            }
            Some(StreamValue::Close(close)) => {
                if close.fvw.len() != shards || close.clock_max.len() != shards {
                    return Err(corrupt(format!(
                        "the close chosen for slot {slot} has clocks of {} shards on a node \
                         with {shards}",
                        close.fvw.len()
                    )));
                }
                st.next = slot + 1;
                *st.outstanding.entry(slot).or_default() += 1;
                self.closes.push_back(Delivered {
                    stream,
                    slot,
                    item: close,
                });
            }
        }
        Ok(self.ready())
    }

    /// The close a new leader appends: everything earlier leaders wrote
    /// (every slot below `through`) must have been delivered.
    pub fn close(&self, leader: u64, ballot: u64, through: Vec<u64>, clocks: &[u64]) -> Close {
        Close {
            leader,
            ballot,
            through,
            // Another group's clock values say nothing of this group's
            // lost commits: only this group's shards can doom an entry.
            fvw: self
                .watermark()
                .iter()
                .zip(&self.remote)
                .map(|(&w, &remote)| if remote { u64::MAX } else { w })
                .collect(),
            clock_max: self
                .named()
                .iter()
                .zip(clocks)
                .zip(&self.remote)
                .map(|((&n, &c), &remote)| if remote { 0 } else { n.max(c) })
                .collect(),
        }
    }

    /// Processes what the deliveries so far allow.
    fn ready(&mut self) -> Ready {
        let mut ready = Ready {
            apply: vec![Vec::new(); self.shards.len()],
            jumps: vec![0; self.shards.len()],
            ..Ready::default()
        };
        loop {
            for sh in &mut self.shards {
                while sh.seen.first() == Some(&(sh.accounted + 1)) {
                    sh.seen.pop_first();
                    sh.accounted += 1;
                }
            }
            let Some(front) = self.closes.front() else {
                break;
            };
            let delivered = front
                .item
                .through
                .iter()
                .enumerate()
                .all(|(k, &t)| self.streams.get(k).is_none_or(|s| s.next >= t));
            if !delivered {
                break;
            }
            let close = self.closes.pop_front().expect("front");
            self.process_close(&close.item, &mut ready);
            self.streams[close.stream].finish(close.slot);
            ready.closed.push((close.item.leader, close.item.ballot));
            self.last_close = Some(close.item);
        }
        let vw = self.watermark();
        for (s, sh) in self.shards.iter_mut().enumerate() {
            while let Some(first) = sh.waiting.first_entry() {
                let c = *first.key();
                if c > sh.accounted || !first.get().item.0.vc.le(&vw) {
                    break;
                }
                let d = first.remove();
                self.streams[d.stream].finish(d.slot);
                sh.done = c;
                ready.apply[s].push(d.item);
            }
            sh.done = match sh.waiting.first_key_value() {
                Some((&c, _)) if c <= sh.accounted => sh.done.max(c - 1),
                _ => sh.done.max(sh.accounted),
            };
        }
        ready
    }

    /// Drops the earlier leaders' entries the close does not cover and
    /// moves every shard's watermark to its `clock_max`.
    fn process_close(&mut self, close: &Close, ready: &mut Ready) {
        let through = |stream: usize| close.through.get(stream).copied().unwrap_or(0);
        for (s, sh) in self.shards.iter_mut().enumerate() {
            if self.remote[s] {
                continue;
            }
            let doomed: Vec<u64> = sh
                .waiting
                .iter()
                .filter(|(_, d)| d.slot < through(d.stream) && !d.item.0.vc.le(&close.fvw))
                .map(|(&c, _)| c)
                .collect();
            for c in doomed {
                let d = sh.waiting.remove(&c).expect("listed");
                sh.seen.remove(&c);
                self.streams[d.stream].finish(d.slot);
                ready.dropped += 1;
            }
            let to = close.clock_max[s];
            if to > sh.accounted {
                sh.accounted = to;
                sh.seen = sh.seen.split_off(&(to + 1));
                ready.jumps[s] = to;
            }
            sh.named = sh.named.max(to);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Epoch, VectorClock};

    fn entry(txn: u64, shard: usize, vc: &[u64], key: &str) -> LogEntry {
        LogEntry {
            txn,
            shard,
            vc: VectorClock::from_vec(vc.to_vec()),
            epoch: Epoch(1),
            writes: vec![(key.as_bytes().to_vec(), Some(Arc::from(&b"v"[..])))],
        }
    }

    fn batch(entries: Vec<LogEntry>) -> Option<StreamValue> {
        Some(StreamValue::Batch(entries))
    }

    /// The transactions applied, per shard, in order.
    fn applied(r: &Ready) -> Vec<Vec<u64>> {
        r.apply
            .iter()
            .map(|es| es.iter().map(|(e, _)| e.txn).collect())
            .collect()
    }

    #[test]
    fn a_shard_applies_in_clock_order_once_the_clocks_below_are_chosen() {
        let mut r = Replay::new(&[0], &[1]);
        // Clock 2 reached the log before clock 1.
        let out = r.deliver(0, 1, batch(vec![entry(2, 0, &[2], "b")]), false);
        assert_eq!(applied(&out.unwrap()), vec![Vec::<u64>::new()]);
        assert_eq!(r.positions(), vec![1], "slot 1 is not processed");
        let out = r
            .deliver(0, 2, batch(vec![entry(1, 0, &[1], "a")]), false)
            .unwrap();
        assert_eq!(applied(&out), vec![vec![1, 2]]);
        assert_eq!((r.done(), r.positions()), (vec![2], vec![3]));
    }

    /// Shard 1 is another group's: an entry naming its clock 5 waits for
    /// that group's watermark to reach 5, and this group's close leaves
    /// shard 1's watermark where that group put it.
    #[test]
    fn a_remote_shards_watermark_comes_from_its_group_only() {
        let mut r = Replay::new(&[0, 0], &[1]);
        r.set_remote(&[false, true]);
        let out = r
            .deliver(0, 1, batch(vec![entry(1, 0, &[1, 5], "a")]), false)
            .unwrap();
        assert_eq!(applied(&out), vec![vec![], vec![]]);
        assert_eq!(applied(&r.raise(1, 4)), vec![vec![], vec![]]);
        assert_eq!(applied(&r.raise(1, 5)), vec![vec![1], vec![]]);
        assert_eq!(r.watermark(), vec![1, 5]);
        // A local shard's watermark does not move by report.
        r.raise(0, 9);
        assert_eq!(r.watermark(), vec![1, 5]);
        let close = r.close(1, 2, vec![2], &[1, 7]);
        assert_eq!(close.clock_max, vec![1, 0]);
        assert_eq!(close.fvw, vec![1, u64::MAX]);
        let out = r
            .deliver(0, 2, Some(StreamValue::Close(close)), false)
            .unwrap();
        assert_eq!(out.jumps, vec![0, 0]);
        assert_eq!(r.watermark(), vec![1, 5]);
    }

    #[test]
    fn an_entry_waits_for_what_it_read_on_another_shard() {
        let mut r = Replay::new(&[0, 0], &[1, 1]);
        // Stream 1 brings a transaction on shard 1 that read shard 0's
        // clock 1, which stream 0 has not delivered yet.
        let out = r
            .deliver(1, 1, batch(vec![entry(2, 1, &[1, 1], "b")]), false)
            .unwrap();
        assert_eq!(applied(&out), vec![vec![], vec![]]);
        let out = r
            .deliver(0, 1, batch(vec![entry(1, 0, &[1, 0], "a")]), false)
            .unwrap();
        assert_eq!(applied(&out), vec![vec![1], vec![2]]);
    }

    #[test]
    fn a_close_drops_what_its_watermark_does_not_cover_and_keeps_the_rest() {
        let mut r = Replay::new(&[0, 0], &[1, 1]);
        // Shard 0's clock 1 was never chosen, so nothing above it on
        // shard 0 was ever acknowledged. Txn 2 read it; txn 3 is shard 0's
        // clock 2; txn 4 is on shard 1 alone and waits behind txn 2.
        r.deliver(1, 1, batch(vec![entry(2, 1, &[1, 1], "b")]), false)
            .unwrap();
        r.deliver(0, 1, batch(vec![entry(3, 0, &[2, 0], "c")]), false)
            .unwrap();
        let out = r
            .deliver(1, 2, batch(vec![entry(4, 1, &[0, 2], "d")]), false)
            .unwrap();
        assert_eq!(applied(&out), vec![vec![], vec![]], "shard 1 waits for 2");
        let close = r.close(9, 5, vec![2, 3], &[0, 0]);
        assert_eq!(close.fvw, vec![0, 2]);
        assert_eq!(close.clock_max, vec![2, 2]);
        // The close goes in stream 0 at slot 2; stream 1's slots below 3
        // are delivered.
        let out = r
            .deliver(0, 2, Some(StreamValue::Close(close)), true)
            .unwrap();
        assert_eq!(out.dropped, 2);
        assert_eq!(out.closed, vec![(9, 5)]);
        assert_eq!(applied(&out), vec![vec![], vec![4]]);
        assert_eq!(out.jumps, vec![2, 0]);
        assert_eq!(r.done(), vec![2, 2]);
        assert_eq!(r.positions(), vec![3, 3]);
        // The new leader's clocks continue above.
        let out = r
            .deliver(1, 3, batch(vec![entry(5, 0, &[3, 2], "e")]), false)
            .unwrap();
        assert_eq!(applied(&out), vec![vec![5], vec![]]);
    }

    #[test]
    fn an_entry_after_a_close_below_its_clock_max_is_refused() {
        let mut r = Replay::new(&[0], &[1]);
        r.deliver(0, 1, batch(vec![entry(1, 0, &[1], "a")]), false)
            .unwrap();
        let close = r.close(1, 2, vec![2], &[5]);
        assert_eq!(close.clock_max, vec![5]);
        r.deliver(0, 2, Some(StreamValue::Close(close)), true)
            .unwrap();
        let err = r
            .deliver(0, 3, batch(vec![entry(2, 0, &[4], "b")]), false)
            .err()
            .expect("refused");
        assert!(err.message.contains("gave up"), "{}", err.message);
        let out = r
            .deliver(0, 3, batch(vec![entry(3, 0, &[6], "c")]), false)
            .unwrap();
        assert_eq!(applied(&out), vec![vec![3]]);
    }

    #[test]
    fn a_close_waits_for_every_stream_below_its_through() {
        let mut r = Replay::new(&[0], &[1, 1]);
        r.deliver(0, 1, batch(vec![entry(2, 0, &[2], "b")]), false)
            .unwrap();
        let close = Close {
            leader: 1,
            ballot: 2,
            through: vec![2, 2],
            fvw: vec![2],
            clock_max: vec![2],
        };
        let out = r
            .deliver(0, 2, Some(StreamValue::Close(close)), false)
            .unwrap();
        assert!(out.closed.is_empty(), "stream 1's slot 1 is not delivered");
        let out = r
            .deliver(1, 1, batch(vec![entry(1, 0, &[1], "a")]), false)
            .unwrap();
        assert_eq!(out.closed, vec![(1, 2)]);
        assert_eq!((applied(&out), out.dropped), (vec![vec![1, 2]], 0));
    }

    #[test]
    fn a_restart_skips_what_the_checkpoint_holds() {
        // The checkpoint holds shard 0 through clock 2 and slot 1.
        let mut r = Replay::new(&[2], &[1]);
        let out = r
            .deliver(
                0,
                1,
                batch(vec![entry(2, 0, &[2], "b"), entry(3, 0, &[3], "c")]),
                false,
            )
            .unwrap();
        assert_eq!(applied(&out), vec![vec![3]]);
        // A slot delivered again is ignored.
        let out = r
            .deliver(0, 1, batch(vec![entry(3, 0, &[3], "c")]), false)
            .unwrap();
        assert_eq!(applied(&out), vec![Vec::<u64>::new()]);
    }

    #[test]
    fn a_clock_value_chosen_twice_or_an_unknown_shard_is_refused() {
        let mut r = Replay::new(&[0], &[1]);
        r.deliver(0, 1, batch(vec![entry(1, 0, &[2], "a")]), false)
            .unwrap();
        let err = r
            .deliver(0, 2, batch(vec![entry(2, 0, &[2], "b")]), false)
            .err()
            .expect("refused");
        assert!(err.message.contains("chosen twice"), "{}", err.message);
        let twice = vec![entry(3, 0, &[3], "c"), entry(4, 0, &[3], "d")];
        assert!(r.deliver(0, 2, batch(twice), false).is_err());
        let err = r
            .deliver(0, 2, batch(vec![entry(3, 1, &[0, 2], "c")]), false)
            .err()
            .expect("refused");
        assert!(err.message.contains("names shard 1"), "{}", err.message);
        assert!(r.deliver(1, 1, None, false).is_err(), "unknown stream");
        // Nothing of the refused batches counted.
        assert_eq!(
            (r.done(), r.positions(), r.next_slots()),
            (vec![0], vec![1], vec![2])
        );
        let out = r
            .deliver(0, 2, batch(vec![entry(5, 0, &[1], "e")]), false)
            .unwrap();
        assert_eq!(applied(&out), vec![vec![5, 1]]);
    }

    /// Random interleavings of several streams end in the state a serial
    /// replay in clock order gives, whatever the order of delivery.
    #[test]
    fn any_interleaving_of_streams_applies_every_shard_in_clock_order() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let (shards, streams) = (1 + rand(3) as usize, 1 + rand(3) as usize);
            // Transactions take clock values in order on one or two
            // shards, reading whatever is latest on the others.
            let mut clocks = vec![0u64; shards];
            let mut logs: Vec<Vec<Vec<LogEntry>>> = vec![Vec::new(); streams];
            for txn in 1..=40u64 {
                let mut vc = clocks.clone();
                let a = rand(shards as u64) as usize;
                let b = rand(shards as u64) as usize;
                let mut mine = vec![a];
                if b != a {
                    mine.push(b);
                }
                for &s in &mine {
                    clocks[s] += 1;
                    vc[s] = clocks[s];
                }
                let stream = rand(streams as u64) as usize;
                let log = &mut logs[stream];
                if log.is_empty() || rand(3) == 0 {
                    log.push(Vec::new());
                }
                for &s in &mine {
                    let e = entry(txn, s, &vc, "k");
                    log.last_mut().expect("pushed").push(e);
                }
            }
            let mut r = Replay::new(&vec![0; shards], &vec![1; streams]);
            let mut next = vec![0usize; streams];
            let mut order: Vec<Vec<u64>> = vec![Vec::new(); shards];
            while next.iter().zip(&logs).any(|(n, l)| *n < l.len()) {
                let k = rand(streams as u64) as usize;
                if next[k] == logs[k].len() {
                    continue;
                }
                let slot = next[k] as u64 + 1;
                let out = r
                    .deliver(k, slot, batch(logs[k][next[k]].clone()), false)
                    .unwrap();
                next[k] += 1;
                for (s, es) in out.apply.iter().enumerate() {
                    order[s].extend(es.iter().map(|(e, _)| e.clock()));
                }
            }
            for (s, o) in order.iter().enumerate() {
                let expect: Vec<u64> = (1..=clocks[s]).collect();
                assert_eq!(o, &expect, "shard {s}");
            }
            let ends: Vec<u64> = logs.iter().map(|l| l.len() as u64 + 1).collect();
            assert_eq!(r.positions(), ends);
            assert_eq!(r.done(), clocks);
        }
    }

    /// A small xorshift generator for the randomized tests.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }
    }

    /// A generated transaction: its vector clock, the shards it has an
    /// entry on, whether it aborted (its entries are abandon markers),
    /// and the transaction it read from.
    struct Gen {
        vc: Vec<u64>,
        wrote: Vec<usize>,
        aborted: bool,
        dep: Option<u64>,
    }

    /// `n` more transactions (ids from `first`) on a leader whose shard
    /// clocks are `clocks`, each reading from a random transaction of
    /// `visible` (or none), some aborting after taking a clock value (an
    /// abandon marker), their entries cut into batches handed to the
    /// streams in turn.
    fn generate(
        rng: &mut Rng,
        clocks: &mut [u64],
        first: u64,
        n: u64,
        txns: &mut BTreeMap<u64, Gen>,
        visible: &[u64],
        streams: &mut [Vec<Vec<LogEntry>>],
    ) {
        let shards = clocks.len();
        let mut turn = rng.below(streams.len() as u64) as usize;
        for txn in first..first + n {
            let readable: Vec<u64> = visible
                .iter()
                .copied()
                .filter(|d| !txns[d].aborted)
                .collect();
            let dep = (!readable.is_empty() && rng.below(2) == 0)
                .then(|| readable[rng.below(readable.len() as u64) as usize]);
            let mut vc = dep.map_or(vec![0; shards], |d| txns[&d].vc.clone());
            let mut wrote = vec![rng.below(shards as u64) as usize];
            let other = rng.below(shards as u64) as usize;
            if other != wrote[0] && rng.below(2) == 0 {
                wrote.push(other);
            }
            let aborted = rng.below(10) == 0;
            let mut entries = Vec::new();
            for &s in &wrote {
                clocks[s] += 1;
                vc[s] = vc[s].max(clocks[s]);
            }
            for &s in &wrote {
                let mut e = entry(txn, s, &vc, "k");
                if aborted {
                    let mut own = vec![0; shards];
                    own[s] = clocks[s];
                    e = LogEntry {
                        txn,
                        shard: s,
                        vc: VectorClock::from_vec(own),
                        epoch: Epoch(0),
                        writes: Vec::new(),
                    };
                }
                entries.push(e);
            }
            txns.insert(
                txn,
                Gen {
                    vc,
                    wrote,
                    aborted,
                    dep,
                },
            );
            for e in entries {
                if streams[turn].is_empty() || rng.below(3) == 0 {
                    turn = (turn + 1) % streams.len();
                    streams[turn].push(Vec::new());
                }
                streams[turn].last_mut().expect("pushed").push(e);
            }
        }
    }

    /// Delivers `values[k]` (stream k's, from slot `from[k]`) to `r` in a
    /// random interleaving; returns the transactions applied, per shard.
    fn deliver_all(
        rng: &mut Rng,
        r: &mut Replay,
        values: &[Vec<Option<StreamValue>>],
        from: &[u64],
        applied: &mut [Vec<u64>],
    ) {
        let mut next = vec![0usize; values.len()];
        while next.iter().zip(values).any(|(n, v)| *n < v.len()) {
            let k = rng.below(values.len() as u64) as usize;
            if next[k] == values[k].len() {
                continue;
            }
            let slot = from[k] + next[k] as u64;
            let out = r
                .deliver(k, slot, values[k][next[k]].clone(), false)
                .unwrap();
            next[k] += 1;
            for (s, es) in out.apply.iter().enumerate() {
                applied[s].extend(es.iter().map(|(e, _)| e.txn));
            }
        }
    }

    /// A leader fails with a random part of each stream's batches chosen
    /// (a prefix per stream: acceptors take slots in order). The new
    /// leader closes; another replica gets the same slots and the close
    /// in another order, then both get the new leader's transactions.
    /// Every transaction the old leader could have acknowledged (its
    /// vector clock covered by what was chosen) survives; both replicas
    /// apply the same transactions in the same order, each on all of its
    /// shards or none, never one without the one it read from; nothing
    /// stays waiting.
    #[test]
    fn a_failover_keeps_what_was_acknowledged_and_replicas_agree() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..300 {
            let shards = 1 + rng.below(3) as usize;
            let nstreams = 1 + rng.below(3) as usize;
            let mut clocks = vec![0u64; shards];
            let mut txns = BTreeMap::new();
            let mut proposed: Vec<Vec<Vec<LogEntry>>> = vec![Vec::new(); nstreams];
            let all: Vec<u64> = Vec::new();
            generate(&mut rng, &mut clocks, 1, 30, &mut txns, &all, &mut proposed);
            // Later transactions read from earlier ones too.
            let visible: Vec<u64> = txns.keys().copied().collect();
            generate(
                &mut rng,
                &mut clocks,
                31,
                30,
                &mut txns,
                &visible,
                &mut proposed,
            );

            // The failure: each stream keeps a prefix of its batches.
            let chosen: Vec<Vec<Vec<LogEntry>>> = proposed
                .iter()
                .map(|b| b[..rng.below(b.len() as u64 + 1) as usize].to_vec())
                .collect();
            // What the old leader could acknowledge: per shard, the
            // clock values up to the first one not chosen.
            let mut settled: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); shards];
            for e in chosen.iter().flatten().flatten() {
                settled[e.shard].insert(e.clock());
            }
            let vw: Vec<u64> = settled
                .iter()
                .map(|c| (1..).find(|v| !c.contains(v)).expect("finite") - 1)
                .collect();
            let acked: Vec<u64> = txns
                .iter()
                .filter(|(_, g)| !g.aborted && g.vc.iter().zip(&vw).all(|(a, b)| a <= b))
                .map(|(&t, _)| t)
                .collect();

            let old: Vec<Vec<Option<StreamValue>>> = chosen
                .iter()
                .map(|bs| bs.iter().map(|b| batch(b.clone())).collect())
                .collect();
            let ones = vec![1u64; nstreams];
            let mut a = Replay::new(&vec![0; shards], &ones);
            let mut a_applied = vec![Vec::new(); shards];
            deliver_all(&mut rng, &mut a, &old, &ones, &mut a_applied);
            let through: Vec<u64> = chosen.iter().map(|b| b.len() as u64 + 1).collect();
            let close = a.close(2, 2, through.clone(), &vec![0; shards]);
            let clock_max = close.clock_max.clone();
            let out = a
                .deliver(0, through[0], Some(StreamValue::Close(close.clone())), true)
                .unwrap();
            assert_eq!(out.closed, vec![(2, 2)]);
            for (s, es) in out.apply.iter().enumerate() {
                a_applied[s].extend(es.iter().map(|(e, _)| e.txn));
            }

            // The new leader's transactions, above clock_max, reading
            // from what it holds.
            let held: Vec<u64> = a_applied.iter().flatten().copied().collect();
            let mut clocks = clock_max.clone();
            let mut fresh: Vec<Vec<Vec<LogEntry>>> = vec![Vec::new(); nstreams];
            generate(&mut rng, &mut clocks, 61, 20, &mut txns, &held, &mut fresh);
            let from: Vec<u64> = through
                .iter()
                .enumerate()
                .map(|(k, &t)| t + u64::from(k == 0))
                .collect();
            let new: Vec<Vec<Option<StreamValue>>> = fresh
                .iter()
                .map(|bs| bs.iter().map(|b| batch(b.clone())).collect())
                .collect();
            deliver_all(&mut rng, &mut a, &new, &from, &mut a_applied);

            // Another replica: old slots, the close and the new slots,
            // each stream in order, the streams interleaved at random.
            let mut both = old.clone();
            both[0].push(Some(StreamValue::Close(close)));
            for (k, vs) in new.into_iter().enumerate() {
                both[k].extend(vs);
            }
            let mut b = Replay::new(&vec![0; shards], &ones);
            let mut b_applied = vec![Vec::new(); shards];
            deliver_all(&mut rng, &mut b, &both, &ones, &mut b_applied);

            assert_eq!(a_applied, b_applied, "the replicas differ");
            for r in [&a, &b] {
                assert!(r.closes.is_empty(), "a close never processed");
                assert!(
                    r.shards.iter().all(|s| s.waiting.is_empty()),
                    "entries left waiting"
                );
            }
            let applied: BTreeMap<u64, Vec<usize>> =
                a_applied
                    .iter()
                    .enumerate()
                    .fold(BTreeMap::new(), |mut m, (s, ts)| {
                        for &t in ts {
                            m.entry(t).or_insert_with(Vec::new).push(s);
                        }
                        m
                    });
            for t in &acked {
                assert!(applied.contains_key(t), "acknowledged txn {t} lost");
            }
            for (t, on) in &applied {
                let g = &txns[t];
                if g.aborted {
                    continue; // markers: each settles its own value
                }
                let mut on = on.clone();
                on.sort_unstable();
                let mut wrote = g.wrote.clone();
                wrote.sort_unstable();
                assert_eq!(on, wrote, "txn {t} applied on some of its shards only");
                if let Some(d) = g.dep
                    && !g.aborted
                {
                    assert!(applied.contains_key(&d), "txn {t} applied without {d}");
                }
            }
            for t in 61..81 {
                if !txns[&t].aborted {
                    assert!(applied.contains_key(&t), "the new leader's txn {t} lost");
                }
            }
        }
    }
}
