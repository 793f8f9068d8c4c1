//! Deterministic simulation of midge: a midge-core broker with persistence, model MQTT 3.1.1
//! and 5.0 clients, a network and a disk, all in one thread under one seeded scheduler that
//! injects faults (chunking, latency, resets at any byte, stalls, partitions, slow readers,
//! crashes at any event, torn and lost writes, write errors), then checks that every QoS 2
//! message is delivered exactly once, every QoS 1 message at least once, that nothing
//! acknowledged is lost across crashes, that order and the retained store are as MQTT says, that
//! memory stays bounded and that every drop is counted. A share of the runs have two brokers,
//! bridged over the same faulty network, and check the same end to end. A failing seed replays
//! the same run, event for event. See ARCHITECTURE.md.

pub mod bridge;
pub mod checker;
pub mod client;
pub mod crossing;
pub mod disk;
pub mod host;
pub mod net;
pub mod params;
pub mod payload;
pub mod rng;
pub mod storage;
pub mod trace;
pub mod world;

pub use checker::Failure;
pub use midge_core::bugs::Bug;

use std::fmt::Write as _;
use trace::fmt_time;
use world::World;

/// Simulated time is in microseconds.
pub const MS: u64 = 1_000;
pub const SEC: u64 = 1_000_000;

/// Simulated seconds of workload (faults and new messages) before the quiet period.
pub const DEFAULT_SECS: u64 = 20;

/// Whether a run has one broker or two bridged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunKind {
    /// Drawn from the seed: `BRIDGED_SHARE` of the seeds run two brokers bridged.
    #[default]
    Drawn,
    Single,
    Bridged,
}

/// The share of seeds that run two brokers bridged, unless told otherwise.
pub const BRIDGED_SHARE: f64 = 0.25;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub kind: RunKind,
    pub bug: Option<Bug>,
    /// Simulated seconds of workload.
    pub secs: u64,
    /// Print every event.
    pub trace: bool,
    /// Events kept for the failure report.
    pub keep: usize,
}

impl Options {
    pub fn new(seed: u64) -> Options {
        Options {
            seed,
            kind: RunKind::Drawn,
            bug: None,
            secs: DEFAULT_SECS,
            trace: false,
            keep: 80,
        }
    }

    /// The command that runs exactly this again.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!("cargo run --release -p midge-sim -- --seed {}", self.seed);
        match self.kind {
            RunKind::Drawn => {}
            RunKind::Single => cmd.push_str(" --single"),
            RunKind::Bridged => cmd.push_str(" --bridged"),
        }
        if let Some(bug) = self.bug {
            write!(cmd, " --bug {bug}").expect("string");
        }
        if self.secs != DEFAULT_SECS {
            write!(cmd, " --secs {}", self.secs).expect("string");
        }
        cmd
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    /// Two brokers, bridged.
    pub bridged: bool,
    /// Hash of the whole event trace.
    pub hash: u64,
    pub events: u64,
    /// Simulated time at the end, microseconds.
    pub sim_time: u64,
    pub crashes: u64,
    pub messages: usize,
    pub counts: checker::Counts,
    pub failure: Option<Failure>,
    /// The failure report: property, details, the last events, the replay command.
    pub report: Option<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Runs one seed.
pub fn run(opts: &Options) -> Outcome {
    let mut world = World::new(opts);
    world.run();
    let failure = world.checker.failure.clone();
    let report = failure.as_ref().map(|f| report(opts, &world, f));
    Outcome {
        seed: opts.seed,
        bridged: world.hosts.len() > 1,
        hash: world.trace.hash(),
        events: world.trace.count,
        sim_time: world.now,
        crashes: world.crashes,
        messages: world.checker.msgs.len(),
        counts: world.checker.counts,
        failure,
        report,
    }
}

/// Runs one seed twice and checks that both runs took exactly the same steps.
pub fn run_twice(opts: &Options) -> Outcome {
    let first = run(opts);
    let second = run(&Options {
        trace: false,
        ..opts.clone()
    });
    if first.hash != second.hash || first.events != second.events {
        let failure = Failure {
            time: first.sim_time.min(second.sim_time),
            property: "determinism: the same seed gives the same run",
            detail: format!(
                "first run: {} events, trace hash {:016x}; second run: {} events, trace hash {:016x}",
                first.events, first.hash, second.events, second.hash
            ),
        };
        let report = format!(
            "seed {} FAILED: {}\n  {}\nreplay: {}\n",
            opts.seed,
            failure.property,
            failure.detail,
            opts.replay_command()
        );
        return Outcome {
            failure: Some(failure),
            report: Some(report),
            ..first
        };
    }
    first
}

fn report(opts: &Options, world: &World, f: &Failure) -> String {
    let mut out = String::new();
    let bug = opts
        .bug
        .map(|b| format!(" (planted bug: {b})"))
        .unwrap_or_default();
    writeln!(out, "seed {} FAILED{bug}: {}", opts.seed, f.property).expect("string");
    for line in f.detail.lines() {
        writeln!(out, "  {line}").expect("string");
    }
    writeln!(
        out,
        "  at {} s of simulated time, after {} events",
        fmt_time(f.time).trim(),
        world.trace.count
    )
    .expect("string");
    writeln!(out, "run: {}", world.describe()).expect("string");
    writeln!(
        out,
        "last {} events:",
        opts.keep.min(world.trace.count as usize)
    )
    .expect("string");
    for (t, ev) in world.trace.last(opts.keep) {
        writeln!(out, "  {} {ev}", fmt_time(*t)).expect("string");
    }
    writeln!(out, "replay: {}", opts.replay_command()).expect("string");
    writeln!(out, "        (add --trace to print every event)").expect("string");
    out
}
