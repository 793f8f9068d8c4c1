//! midge-sim: runs seeds of the deterministic simulation.
//!
//! ```text
//! midge-sim --seed N [--trace]       one run; --trace prints every event
//! midge-sim --seeds A..B             a range, in parallel; ends with "sim: N passed, N failed"
//! midge-sim --bug NAME ...           plants a bug in the broker (see --list-bugs)
//! midge-sim --secs S                 simulated seconds of workload per run (default 20)
//! midge-sim --jobs J                 worker threads for --seeds (default: every core)
//! midge-sim --hashes                 also prints every seed's trace hash, in seed order
//! midge-sim --bridged | --single      every run with two brokers bridged, or with one (by
//!                                    default a quarter of the seeds, drawn, are bridged)
//! ```

use midge_sim::{Bug, DEFAULT_SECS, Options, Outcome, RunKind, SEC, run, run_twice};
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

/// Prints a line; a closed stdout (`| head`) ends nothing.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Every this many seeds of a range is run twice to check determinism.
const TWICE_EVERY: u64 = 16;

const USAGE: &str = "usage: midge-sim (--seed N [--trace] | --seeds A..B [--jobs J] [--hashes] | --list-bugs) [--bridged | --single] [--bug NAME] [--secs S] [--keep EVENTS]";

struct Args {
    seed: Option<u64>,
    kind: RunKind,
    seeds: Option<(u64, u64)>,
    bug: Option<Bug>,
    secs: u64,
    trace: bool,
    jobs: usize,
    keep: usize,
    list_bugs: bool,
    /// Print each seed's trace hash: two builds that must run alike compare these lists.
    hashes: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seed: None,
        kind: RunKind::Drawn,
        seeds: None,
        bug: None,
        secs: DEFAULT_SECS,
        trace: false,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        keep: 80,
        list_bugs: false,
        hashes: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--seed" => {
                let v = value("--seed")?;
                args.seed = Some(v.parse().map_err(|_| format!("bad seed {v}"))?);
            }
            "--seeds" => {
                let v = value("--seeds")?;
                let (a, b) = v
                    .split_once("..")
                    .ok_or(format!("--seeds wants A..B, got {v}"))?;
                let a: u64 = a.parse().map_err(|_| format!("bad seed {a}"))?;
                let b: u64 = b.parse().map_err(|_| format!("bad seed {b}"))?;
                if b < a {
                    return Err(format!("empty range {v}"));
                }
                args.seeds = Some((a, b));
            }
            "--bug" => {
                let v = value("--bug")?;
                args.bug =
                    Some(Bug::from_name(&v).ok_or(format!("no bug named {v}; see --list-bugs"))?);
            }
            "--secs" => {
                let v = value("--secs")?;
                args.secs = v.parse().map_err(|_| format!("bad --secs {v}"))?;
            }
            "--jobs" => {
                let v = value("--jobs")?;
                args.jobs = v
                    .parse::<usize>()
                    .map_err(|_| format!("bad --jobs {v}"))?
                    .max(1);
            }
            "--keep" => {
                let v = value("--keep")?;
                args.keep = v.parse().map_err(|_| format!("bad --keep {v}"))?;
            }
            "--trace" => args.trace = true,
            "--list-bugs" => args.list_bugs = true,
            "--hashes" => args.hashes = true,
            "--bridged" => args.kind = RunKind::Bridged,
            "--single" => args.kind = RunKind::Single,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if !args.list_bugs && args.seed.is_none() == args.seeds.is_none() {
        return Err(USAGE.to_owned());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if args.list_bugs {
        for bug in Bug::ALL {
            say!("{:<28} {}", bug.name(), bug.description());
        }
        return ExitCode::SUCCESS;
    }
    let options = |seed| Options {
        seed,
        kind: args.kind,
        bug: args.bug,
        secs: args.secs,
        trace: args.trace,
        keep: args.keep,
    };
    let started = Instant::now();
    let (a, b, outcomes) = match (args.seed, args.seeds) {
        (Some(seed), _) => {
            let opts = options(seed);
            let outcome = if args.trace {
                run(&opts)
            } else {
                run_twice(&opts)
            };
            match &outcome.report {
                Some(report) => {
                    let _ = write!(std::io::stdout(), "{report}");
                }
                None => say!(
                    "seed {seed} passed{}: {} events, {:.1} simulated s, {} crashes, {} messages; {} owed deliveries ({} across the bridge): {} arrived, {} to sessions that ended, {} counted drops; trace hash {:016x}",
                    if outcome.bridged {
                        " (two brokers bridged)"
                    } else {
                        ""
                    },
                    outcome.events,
                    outcome.sim_time as f64 / SEC as f64,
                    outcome.crashes,
                    outcome.messages,
                    outcome.counts.owed,
                    outcome.counts.crossed,
                    outcome.counts.delivered,
                    outcome.counts.ended,
                    outcome.counts.dropped,
                    outcome.hash
                ),
            }
            (seed, seed + 1, vec![outcome])
        }
        (None, Some((a, b))) => (a, b, run_range(a, b, &args, options)),
        (None, None) => unreachable!("checked by parse"),
    };
    let wall = started.elapsed().as_secs_f64();
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let passed = outcomes.len() - failed;
    let events: u64 = outcomes.iter().map(|o| o.events).sum();
    let sim: f64 = outcomes.iter().map(|o| o.sim_time as f64).sum::<f64>() / SEC as f64;
    if args.hashes {
        let mut sorted: Vec<&Outcome> = outcomes.iter().collect();
        sorted.sort_unstable_by_key(|o| o.seed);
        for o in sorted {
            say!("seed {} hash {:016x} events {}", o.seed, o.hash, o.events);
        }
    }
    if b - a > 1 {
        say!(
            "sim: {} seeds ({} bridged, {} owed deliveries across a bridge) in {wall:.1} s on {} threads: {events} events ({:.0} per second), {sim:.0} simulated s ({:.0} per second)",
            outcomes.len(),
            outcomes.iter().filter(|o| o.bridged).count(),
            outcomes.iter().map(|o| o.counts.crossed).sum::<u64>(),
            args.jobs,
            events as f64 / wall,
            sim / wall
        );
        let mut failures: Vec<u64> = outcomes
            .iter()
            .filter(|o| !o.passed())
            .map(|o| o.seed)
            .collect();
        failures.sort_unstable();
        if !failures.is_empty() {
            say!("sim: failing seeds: {failures:?}");
        }
    }
    say!("sim: {passed} passed, {failed} failed");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs seeds `a..b` on `args.jobs` threads, printing failures as they come and progress now
/// and then. Each run is single-threaded and deterministic; threads only share the counter.
fn run_range(a: u64, b: u64, args: &Args, options: impl Fn(u64) -> Options + Sync) -> Vec<Outcome> {
    let next = AtomicU64::new(a);
    let total = b - a;
    let (tx, rx) = mpsc::channel::<Outcome>();
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(total as usize);
    std::thread::scope(|s| {
        for _ in 0..args.jobs.min(total as usize).max(1) {
            let tx = tx.clone();
            let next = &next;
            let options = &options;
            s.spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= b {
                        return;
                    }
                    let opts = Options {
                        trace: false,
                        ..options(seed)
                    };
                    let outcome = if seed.is_multiple_of(TWICE_EVERY) {
                        run_twice(&opts)
                    } else {
                        run(&opts)
                    };
                    if tx.send(outcome).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut last_progress = Instant::now();
        let mut failed = 0;
        for outcome in rx {
            if let Some(report) = &outcome.report {
                failed += 1;
                say!("{report}");
            }
            outcomes.push(outcome);
            let done = outcomes.len() as u64;
            if last_progress.elapsed().as_secs() >= 5 || done == total {
                last_progress = Instant::now();
                say!(
                    "sim: {done}/{total} seeds, {failed} failed, {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    });
    outcomes
}
