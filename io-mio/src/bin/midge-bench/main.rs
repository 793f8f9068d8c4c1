//! midge-bench: an MQTT load generator for comparing brokers side by side.
//!
//! One thread, one mio event loop, any number of connections; publishes are pipelined and the
//! packets of the hot path are encoded and read by hand, so the generator costs little CPU next
//! to the broker it measures. Every payload carries its publisher, a sequence number and the
//! time it was due, so the generator checks delivery (nothing lost at QoS 1 and 2, no duplicate
//! at QoS 2, order kept) and measures latency. A bound on how far a publisher may run ahead of
//! its slowest subscriber keeps a growing backlog from passing for throughput.
//!
//! ```text
//! midge-bench fan-in  --publishers 4 --qos 1 --addr 127.0.0.1:1883 --broker-pid PID
//! midge-bench fan-out --subscribers 50 --qos 0
//! midge-bench pairs   --pairs 1 --qos 1 --rate 5000 --messages 50000     # latency
//! midge-bench idle    --connections 10000 --addr 127.0.0.1:1883 --addr 127.0.0.1:1884
//! ```
//!
//! It prints a summary and, with `--json`, one JSON object per run on stdout; it exits non-zero
//! when delivery was incomplete or wrong.

mod histogram;
mod idle;
mod net;
mod options;
mod procfs;
mod report;
mod traffic;
mod wire;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match options::parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("midge-bench: {e}\n\n{}", options::USAGE);
            return ExitCode::from(2);
        }
    };
    #[cfg(unix)]
    raise_open_files_limit();
    let outcome = match options.scenario {
        options::Scenario::Idle { connections } => idle::run(&options, connections),
        _ => traffic::run(&options),
    };
    match outcome {
        Ok(report) => {
            report.print(options.json);
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("midge-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Many connections need many descriptors: where permitted (root with CAP_SYS_RESOURCE), raise
/// the hard limit too; in any case the soft limit up to the hard one. Windows has no such limit.
#[cfg(unix)]
fn raise_open_files_limit() {
    let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, 1 << 20, 1 << 20);
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("midge-bench: cannot raise the open files limit: {e}");
    }
}
