//! The simulator's checkers can fail: each bug planted in the broker (the `sim-bugs` feature of
//! midge-core) is caught within 1,000 seeds, a failing seed fails again the same way when
//! replayed, and without a bug a range of seeds passes, every run taking the same steps twice.
//!
//! Runs are short (a few simulated seconds of workload) so that this stays quick in a debug
//! build; the first failing seed ends each search.

use midge_sim::{Bug, Options, Outcome, run, run_twice};

/// Simulated seconds of workload per run.
const SECS: u64 = 3;
const MAX_SEEDS: u64 = 1_000;

fn options(seed: u64, bug: Option<Bug>) -> Options {
    Options {
        bug,
        secs: SECS,
        ..Options::new(seed)
    }
}

/// The first seed that catches `bug`, replayed to check it fails the same way.
fn caught(bug: Bug) -> (u64, Outcome) {
    for seed in 0..MAX_SEEDS {
        let outcome = run(&options(seed, Some(bug)));
        let Some(failure) = &outcome.failure else {
            continue;
        };
        let again = run(&options(seed, Some(bug)));
        assert_eq!(again.hash, outcome.hash, "seed {seed} replays differently");
        assert_eq!(
            again.failure.as_ref().map(|f| f.property),
            Some(failure.property),
            "seed {seed} replays with another failure"
        );
        let report = outcome.report.as_deref().unwrap_or_default();
        assert!(
            report.contains(&format!("--seed {seed} --bug {bug}")),
            "{report}"
        );
        return (seed, outcome);
    }
    panic!("bug {bug} not caught in {MAX_SEEDS} seeds");
}

#[test]
fn ack_before_durable_is_caught() {
    caught(Bug::AckBeforeDurable);
}

#[test]
fn forget_inbound_qos2_is_caught() {
    caught(Bug::ForgetInboundQos2);
}

#[test]
fn publish_instead_of_pubrel_is_caught() {
    caught(Bug::PublishInsteadOfPubrel);
}

#[test]
fn drop_queue_on_reconnect_is_caught() {
    caught(Bug::DropQueueOnReconnect);
}

#[test]
fn retained_twice_is_caught() {
    caught(Bug::RetainedTwice);
}

#[test]
fn skip_qos1_resend_is_caught() {
    caught(Bug::SkipQos1Resend);
}

#[test]
fn expire_session_early_is_caught() {
    let (_, outcome) = caught(Bug::ExpireSessionEarly);
    let property = outcome.failure.map(|f| f.property);
    assert_eq!(property, Some("sessions last until they expire"));
}

/// Not a bug of the broker: the storage protocol around it, as the simulator plays the
/// daemon's compaction with the planted order of steps.
#[test]
fn remove_before_snapshot_is_caught() {
    caught(Bug::RemoveBeforeSnapshot);
}

/// The fault the simulator found in the daemon's recovery: a process crash, a restart that
/// starts a new segment after records only the page cache held, then a power loss.
#[test]
fn skip_recovery_sync_is_caught() {
    let (_, outcome) = caught(Bug::SkipRecoverySync);
    let property = outcome.failure.map(|f| f.property);
    assert_eq!(
        property,
        Some("recovery never finds corruption after a crash")
    );
}

#[test]
fn every_bug_has_a_test() {
    assert_eq!(Bug::ALL.len(), 11);
    for bug in Bug::ALL {
        assert_eq!(Bug::from_name(bug.name()), Some(bug));
    }
}

#[test]
fn without_a_bug_seeds_pass_and_replay_exactly() {
    for seed in 0..16 {
        let outcome = run_twice(&options(seed, None));
        assert!(
            outcome.passed(),
            "{}",
            outcome.report.as_deref().unwrap_or_default()
        );
    }
}

#[test]
fn shared_lose_on_hand_over_is_caught() {
    caught(Bug::SharedLoseOnHandOver);
}

#[test]
fn shared_copy_qos2_is_caught() {
    caught(Bug::SharedCopyQos2);
}
