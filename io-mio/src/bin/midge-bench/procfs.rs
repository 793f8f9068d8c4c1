//! What Linux's /proc says about a process: CPU time used (all threads) and resident memory.
//! The broker's CPU time is the fair measure when broker and load generator share the cores.

use std::path::Path;

/// CPU time (user + system) of every thread of `pid`, in seconds. Per-thread
/// `schedstat` gives nanoseconds; where it is missing, `stat`'s clock ticks (10 ms) are used.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    schedstat_seconds(pid).or_else(|| stat_seconds(pid))
}

fn schedstat_seconds(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut nanos = 0u64;
    let mut any = false;
    for task in tasks.flatten() {
        // A thread may end between listing and reading: skip it.
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        nanos += text.split_whitespace().next()?.parse::<u64>().ok()?;
        any = true;
    }
    any.then_some(nanos as f64 / 1e9)
}

/// utime + stime from /proc/PID/stat. The clock tick is 100 Hz on every Linux configuration
/// midge targets (USER_HZ is fixed at 100 for user space).
fn stat_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Resident set size of `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let text =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_measured() {
        let pid = std::process::id();
        let before = cpu_seconds(pid).expect("cpu time of this process");
        // Busy for 100 ms of wall time: at least a few scheduler ticks of CPU.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let after = cpu_seconds(pid).expect("cpu time of this process");
        assert!(after > before, "{before} -> {after}");
        assert!(stat_seconds(pid).is_some());
        assert!(rss_kib(pid).expect("rss") > 0);
    }
}
