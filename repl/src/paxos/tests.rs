//! Unit tests of the Paxos replica (the simulation in `tests/sim.rs`
//! covers it under faults).
use super::*;

/// Replica `id` of a group of voters 1, 2 and 3.
fn config(id: NodeId, election_ticks: u32) -> Config {
    Config {
        id,
        voters: vec![1, 2, 3],
        learners: vec![],
        standby: false,
        election_ticks,
        heartbeat_ticks: (election_ticks / 2).max(1),
        max_batch: 8,
        stick_ticks: 4,
        seed: u64::from(id),
        retain: 1000,
    }
}

/// A promise for `ballot` reporting `accepted`, from a log starting at
/// `log_start`.
fn promise(ballot: Ballot, accepted: Vec<(Slot, Ballot, Value)>, log_start: Slot) -> Message {
    Message::Promise {
        ballot,
        accepted,
        log_start,
    }
}

fn leader_of_one_group() -> Replica {
    let cfg = config(1, 2);
    let mut r = Replica::new(cfg, HardState::default());
    // Stand, and take the promises of 2 and 3.
    for _ in 0..8 {
        r.tick();
    }
    let ballot = r.ballot();
    for n in [2, 3] {
        r.step(n, promise(ballot, vec![], 1));
    }
    assert!(r.is_leader());
    let _ = r.ready();
    r
}

#[test]
fn a_candidate_behind_a_promisers_log_does_not_lead() {
    let cfg = config(1, 4);
    let mut r = Replica::new(cfg, HardState::default());
    for _ in 0..8 {
        r.tick();
    }
    let ballot = r.ballot();
    let _ = r.ready();
    // Replica 2 forgot slots 1..50 (chosen, applied and compacted):
    // its promise says nothing about them, so they must not become
    // no-ops. The candidate asks to catch up instead.
    r.step(2, promise(ballot, vec![], 50));
    assert!(!r.is_leader());
    let ready = r.ready();
    assert!(
        ready
            .messages
            .iter()
            .any(|e| e.to == 2 && e.msg == Message::CatchUp { from: 1 })
    );
    // Replica 2 has forgotten those entries: it reports that a
    // snapshot is needed.
    let mut two = Replica::restore(config(2, 4), HardState::default(), 50);
    two.step(1, Message::CatchUp { from: 1 });
    assert_eq!(two.ready().snapshot_needed, vec![(1, 1)]);
    // Once it has installed a snapshot at 50, the same promise lets
    // it lead.
    r.install_snapshot(50, None);
    for _ in 0..16 {
        r.tick();
    }
    let ballot = r.ballot();
    r.step(2, promise(ballot, vec![], 50));
    assert!(r.is_leader());
    assert_eq!(r.first_unchosen(), 50);
}

#[test]
fn confused_or_forged_messages_are_ignored() {
    let mut r = leader_of_one_group();
    let ballot = r.ballot();
    // Acks for a slot this leader never proposed.
    for n in [2, 3] {
        r.step(
            n,
            Message::Accepted {
                ballot,
                slots: vec![42],
                durable: 1,
                echo: 0,
            },
        );
    }
    // A replica outside the group, and this replica's own id.
    for from in [9, 1] {
        r.step(
            from,
            Message::Prepare {
                ballot: Ballot {
                    number: 99,
                    node: from,
                },
                from: 1,
            },
        );
    }
    assert!(r.is_leader());
    assert_eq!(r.ballot(), ballot);
    assert!(r.ready().chosen.is_empty());
}

/// A Prepare for the largest ballot number (once one forged frame wedged a group
/// for good: its promise was persisted, and standing wrapped the number) and
/// slots at the end of the range are dropped; and a replica whose promise
/// is at the largest number does not panic when it would stand.
#[test]
fn implausible_ballots_and_slots_are_dropped_and_do_not_overflow() {
    let mut r = leader_of_one_group();
    let ballot = r.ballot();
    r.step(
        2,
        Message::Prepare {
            ballot: Ballot {
                number: u64::MAX,
                node: 2,
            },
            from: 1,
        },
    );
    r.step(2, Message::CatchUp { from: u64::MAX });
    r.step(
        2,
        Message::Chosen {
            entries: vec![(u64::MAX, Value::Noop)],
        },
    );
    assert!(r.is_leader());
    assert_eq!(r.ballot(), ballot);
    assert!(r.ready().chosen.is_empty());

    let hard = HardState {
        promised: Ballot {
            number: u64::MAX,
            node: 2,
        },
        ..HardState::default()
    };
    let mut stuck = Replica::new(config(1, 2), hard);
    for _ in 0..20 {
        stuck.tick();
    }
    assert!(!stuck.is_leader());
    assert_eq!(stuck.ballot().number, u64::MAX);
}

#[test]
fn the_lease_runs_from_the_send_tick_of_answered_accepts() {
    let mut r = leader_of_one_group();
    let ballot = r.ballot();
    assert_eq!(r.quorum_acked_tick(), None, "no follower answered yet");
    let ack = |echo| Message::Accepted {
        ballot,
        slots: vec![],
        durable: 1,
        echo,
    };
    for _ in 0..5 {
        r.tick();
    }
    let sent = r.now();
    r.step(2, ack(sent - 3));
    assert_eq!(r.quorum_acked_tick(), Some(sent - 3));
    // An older answer does not move it back; a newer one moves it on.
    r.step(3, ack(sent - 4));
    assert_eq!(r.quorum_acked_tick(), Some(sent - 3));
    r.step(3, ack(sent));
    assert_eq!(r.quorum_acked_tick(), Some(sent));
    // An echo of a tick not reached yet is a confused peer's.
    r.step(2, ack(sent + 100));
    assert_eq!(r.quorum_acked_tick(), Some(sent));
}

#[test]
fn a_replica_just_started_promises_only_after_the_stick_time() {
    let cfg = config(2, 10);
    let mut r = Replica::new(cfg, HardState::default());
    let ballot = Ballot { number: 1, node: 3 };
    r.step(3, Message::Prepare { ballot, from: 1 });
    let ready = r.ready();
    assert!(ready.messages.is_empty() && ready.persist.is_empty());
    for _ in 0..4 {
        r.tick();
    }
    let ready = r.ready();
    assert_eq!(ready.persist, vec![Persist::Promised(ballot)]);
    assert!(matches!(
        ready.messages.as_slice(),
        [Envelope {
            to: 3,
            msg: Message::Promise { .. },
            ..
        }]
    ));
}

#[test]
fn two_values_chosen_for_a_slot_are_a_reported_conflict_not_a_panic() {
    let mut r = leader_of_one_group();
    let batch = |b: u8| Value::Batch {
        origin: Ballot { number: 9, node: 2 },
        first: true,
        data: vec![b].into(),
    };
    r.step(
        2,
        Message::Chosen {
            entries: vec![(5, batch(1))],
        },
    );
    assert!(r.ready().conflict.is_none());
    r.step(
        3,
        Message::Chosen {
            entries: vec![(5, batch(2))],
        },
    );
    assert!(r.ready().conflict.is_some());
}

/// Learner 4 of voters 1, 2 and 3, standby or not, that has followed
/// leader 1 through an Accept of slot 1 (not chosen yet) which said that
/// everything below `chosen` is chosen.
fn learner_following_one(standby: bool, chosen: Slot) -> (Replica, Ballot, Value) {
    let cfg = Config {
        id: 4,
        learners: vec![4],
        standby,
        ..config(4, 4)
    };
    let mut r = Replica::new(cfg, HardState::default());
    let old = Ballot { number: 1, node: 1 };
    let value = Value::Batch {
        origin: old,
        first: true,
        data: vec![7].into(),
    };
    r.step(
        1,
        Message::Accept {
            ballot: old,
            entries: vec![(1, value.clone())],
            chosen,
            forget: 1,
            sent: 0,
        },
    );
    let _ = r.ready();
    (r, old, value)
}

#[test]
fn a_standby_learner_leads_with_a_majority_of_the_voters_without_voting() {
    let (mut r, old, value) = learner_following_one(true, 1);
    // Leader 1 falls silent: the learner stands, asking the voters only.
    for _ in 0..16 {
        if r.is_candidate() {
            break;
        }
        r.tick();
    }
    assert!(r.is_candidate());
    let ballot = r.ballot();
    assert_eq!(ballot, Ballot { number: 2, node: 4 });
    let prepared: BTreeSet<NodeId> = (r.ready().messages.iter())
        .filter(|e| matches!(e.msg, Message::Prepare { .. }))
        .map(|e| e.to)
        .collect();
    assert_eq!(prepared, BTreeSet::from([1, 2, 3]));
    // Its own acceptance of slot 1 is not a promise: one voter is not a
    // majority.
    r.step(2, promise(ballot, vec![(1, old, value.clone())], 1));
    assert!(!r.is_leader());
    r.step(3, promise(ballot, vec![], 1));
    assert!(r.is_leader());
    // It proposes slot 1's value again in its ballot; its own
    // acceptance counts for nothing, so one voter's does not choose it.
    let ready = r.ready();
    assert!(ready.messages.iter().any(|e| matches!(
        &e.msg,
        Message::Accept { ballot: b, entries, .. } if *b == ballot && entries == &vec![(1, value.clone())]
    )));
    let ack = |slots| Message::Accepted {
        ballot,
        slots,
        durable: 1,
        echo: 0,
    };
    r.step(2, ack(vec![1]));
    assert!(r.ready().chosen.is_empty());
    assert!(!r.ready_to_serve());
    // Nor does its lease count itself.
    assert_eq!(r.quorum_acked_tick(), None);
    r.step(3, ack(vec![1]));
    assert_eq!(r.ready().chosen, vec![(1, value)]);
    assert!(r.ready_to_serve());
    // Its lease needs a majority of the voters too.
    assert_eq!(r.quorum_acked_tick(), Some(0));
    // It answers no candidate: it never votes.
    r.step(
        2,
        Message::Prepare {
            ballot: Ballot { number: 9, node: 2 },
            from: 1,
        },
    );
    assert!(r.ready().messages.is_empty());
}

/// How many times `r` stands for election in `ticks` ticks.
fn stands_in(r: &mut Replica, ticks: u32) -> usize {
    let mut stood = 0;
    for _ in 0..ticks {
        r.tick();
        let ready = r.ready();
        if ready
            .messages
            .iter()
            .any(|e| matches!(e.msg, Message::Prepare { .. }))
        {
            stood += 1;
        }
    }
    stood
}

#[test]
fn a_learner_stands_only_if_standby_and_up_to_date() {
    // Slot 1 is accepted; a leader saying that slots below 3 are chosen
    // leaves the learner without slot 2.
    for (standby, chosen, stands) in [
        (false, 2, false),
        (true, 3, false),
        (true, 2, true),
        (true, 1, true),
    ] {
        let (mut r, ..) = learner_following_one(standby, chosen);
        assert_eq!(
            stands_in(&mut r, 16) > 0,
            stands,
            "standby {standby}, leader's first unchosen slot {chosen}"
        );
    }
    // One that stands in vain (cut off from a majority of the voters)
    // gives up after a few tries until it has followed a leader again:
    // it would keep outbidding the voters' candidates.
    let (mut r, ..) = learner_following_one(true, 1);
    assert_eq!(stands_in(&mut r, 200), STANDBY_TRIES as usize);
    assert!(!r.is_candidate());
    // Told to stand (its node leads the first stream), it stands even
    // when behind on this stream (the voters would not stand for it),
    // and again when that fails.
    let (mut r, ..) = learner_following_one(true, 3);
    r.set_candidacy(true);
    assert!(stands_in(&mut r, 64) > 1);
    // One that never followed a leader leaves a group starting up to
    // the voters.
    let cfg = Config {
        id: 4,
        learners: vec![4],
        standby: true,
        ..config(4, 4)
    };
    let mut r = Replica::new(cfg, HardState::default());
    for _ in 0..64 {
        r.tick();
    }
    assert!(!r.is_candidate());
}
