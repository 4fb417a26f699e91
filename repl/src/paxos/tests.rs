//! Unit tests of the Paxos replica (the simulation in `tests/sim.rs`
//! covers it under faults).
use super::*;

/// Replica `id` of a group of voters 1, 2 and 3.
fn config(id: NodeId, election_ticks: u32) -> Config {
    Config {
        id,
        voters: vec![1, 2, 3],
        learners: vec![],
        election_ticks,
        heartbeat_ticks: (election_ticks / 2).max(1),
        max_batch: 8,
        stick_ticks: 4,
        seed: u64::from(id),
        retain: 1000,
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
        r.step(
            n,
            Message::Promise {
                ballot,
                accepted: vec![],
                log_start: 1,
            },
        );
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
    r.step(
        2,
        Message::Promise {
            ballot,
            accepted: vec![],
            log_start: 50,
        },
    );
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
    r.step(
        2,
        Message::Promise {
            ballot,
            accepted: vec![],
            log_start: 50,
        },
    );
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
                    epoch: 99,
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
    let ballot = Ballot { epoch: 1, node: 3 };
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
        origin: Ballot { epoch: 9, node: 2 },
        first: true,
        data: vec![b],
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
