//! The event trace: every step of a run, hashed as it happens (two runs of a seed must end with
//! the same hash), the last few kept for the failure report, all printed with `--trace`.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write as _;

/// A packet, summarized: its type, packet id and what matters to the checkers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Pkt {
    pub kind: &'static str,
    pub pid: u16,
    pub qos: u8,
    pub dup: bool,
    pub retain: bool,
    /// The message's (publisher, sequence), for a tagged PUBLISH.
    pub tag: Option<(u16, u32)>,
    /// CONNACK session present, a reason code, and the like.
    pub flag: u8,
}

impl fmt::Display for Pkt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind)?;
        if self.pid != 0 {
            write!(f, " pid={}", self.pid)?;
        }
        if self.kind == "PUBLISH" {
            write!(f, " q{}", self.qos)?;
            if self.dup {
                f.write_str(" dup")?;
            }
            if self.retain {
                f.write_str(" retain")?;
            }
        }
        if let Some((p, s)) = self.tag {
            write!(f, " msg=c{p}#{s}")?;
        }
        if self.flag != 0 {
            write!(f, " [{}]", self.flag)?;
        }
        Ok(())
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ev {
    /// Bytes of a link reached the broker (`up`) or the client, or its end of stream.
    Deliver {
        link: u64,
        up: bool,
        bytes: u32,
        fin: bool,
    },
    /// An input handed to the broker.
    Input {
        what: &'static str,
        conn: u64,
    },
    /// An action the broker asked for.
    Action {
        what: &'static str,
        conn: u64,
        bytes: u32,
    },
    Persist {
        lsn: u64,
        bytes: u32,
    },
    FsyncStart {
        lsn: u64,
    },
    Durable {
        lsn: u64,
    },
    WriteError {
        kept: u32,
        of: u32,
    },
    Crash {
        power_loss: bool,
        kept: u64,
        lost: u64,
        flipped: bool,
        undone: u32,
    },
    Restart {
        records: u64,
        lsn: u64,
        snapshot: bool,
        segments: u32,
        truncated: u64,
    },
    /// A file operation of the log writer or compactor.
    File {
        what: &'static str,
        name: String,
    },
    Connect {
        client: usize,
        link: u64,
        clean: bool,
    },
    ConnAck {
        client: usize,
        present: bool,
        epoch: u32,
    },
    Send {
        client: usize,
        pkt: Pkt,
    },
    Recv {
        client: usize,
        pkt: Pkt,
    },
    Lost {
        client: usize,
        why: &'static str,
    },
    Fault {
        what: &'static str,
        a: u64,
        b: u64,
    },
    Phase(&'static str),
    /// An event of a broker other than the first (whose events are unmarked, as they were
    /// when the simulator ran one broker).
    Host {
        host: usize,
        ev: Box<Ev>,
    },
}

impl fmt::Display for Ev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ev::Deliver {
                link,
                up,
                bytes,
                fin,
            } => {
                let dir = if *up { "->broker" } else { "->client" };
                write!(f, "link {link} {dir} {bytes} bytes")?;
                if *fin {
                    f.write_str(" + end of stream")?;
                }
                Ok(())
            }
            Ev::Input { what, conn } => write!(f, "broker <- {what} conn {conn}"),
            Ev::Action { what, conn, bytes } => {
                write!(f, "broker -> {what} conn {conn}")?;
                if *bytes > 0 {
                    write!(f, " ({bytes} bytes)")?;
                }
                Ok(())
            }
            Ev::Persist { lsn, bytes } => write!(f, "disk append up to lsn {lsn} ({bytes} bytes)"),
            Ev::FsyncStart { lsn } => write!(f, "disk fsync started (up to lsn {lsn})"),
            Ev::Durable { lsn } => write!(f, "disk durable up to lsn {lsn}"),
            Ev::WriteError { kept, of } => {
                write!(f, "disk WRITE ERROR: {kept} of {of} bytes written")
            }
            Ev::Crash {
                power_loss,
                kept,
                lost,
                flipped,
                undone,
            } => {
                let kind = if *power_loss {
                    "power loss"
                } else {
                    "process crash"
                };
                write!(
                    f,
                    "BROKER CRASH ({kind}): log keeps {kept} bytes, loses {lost}"
                )?;
                if *flipped {
                    f.write_str(", a bit flipped in the torn tail")?;
                }
                if *undone > 0 {
                    write!(f, ", {undone} directory operations undone")?;
                }
                Ok(())
            }
            Ev::Restart {
                records,
                lsn,
                snapshot,
                segments,
                truncated,
            } => write!(
                f,
                "BROKER RESTART: {}{records} records from {segments} segments, up to lsn \
                 {lsn}, {truncated} torn bytes cut",
                if *snapshot { "a snapshot and " } else { "" }
            ),
            Ev::File { what, name } => write!(f, "disk: {what} {name}"),
            Ev::Connect {
                client,
                link,
                clean,
            } => write!(f, "c{client} connects on link {link} (clean start {clean})"),
            Ev::ConnAck {
                client,
                present,
                epoch,
            } => write!(
                f,
                "c{client} CONNACK session present {present} (session #{epoch})"
            ),
            Ev::Send { client, pkt } => write!(f, "c{client} sends {pkt}"),
            Ev::Recv { client, pkt } => write!(f, "c{client} receives {pkt}"),
            Ev::Lost { client, why } => write!(f, "c{client} connection ends: {why}"),
            Ev::Fault { what, a, b } => write!(f, "fault: {what} {a} {b}"),
            Ev::Phase(what) => write!(f, "== {what}"),
            Ev::Host { host, ev } => write!(f, "[broker {host}] {ev}"),
        }
    }
}

#[derive(Debug)]
pub struct Trace {
    hasher: DefaultHasher,
    ring: VecDeque<(u64, Ev)>,
    keep: usize,
    pub verbose: bool,
    pub count: u64,
}

impl Trace {
    pub fn new(keep: usize, verbose: bool) -> Trace {
        Trace {
            hasher: DefaultHasher::new(),
            ring: VecDeque::with_capacity(keep + 1),
            keep,
            verbose,
            count: 0,
        }
    }

    pub fn push(&mut self, now: u64, ev: Ev) {
        self.count += 1;
        now.hash(&mut self.hasher);
        ev.hash(&mut self.hasher);
        if self.verbose {
            // A closed stdout (`| head`) is not the run's business.
            let _ = writeln!(std::io::stdout(), "{} {ev}", fmt_time(now));
        }
        if self.keep > 0 {
            if self.ring.len() == self.keep {
                self.ring.pop_front();
            }
            self.ring.push_back((now, ev));
        }
    }

    /// Folds bytes (sent, persisted) into the hash.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.hasher.write(bytes);
    }

    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    pub fn last(&self, n: usize) -> impl Iterator<Item = &(u64, Ev)> {
        self.ring.iter().skip(self.ring.len().saturating_sub(n))
    }
}

/// Simulated time as seconds with microseconds.
pub fn fmt_time(us: u64) -> String {
    format!("{:>4}.{:06}", us / 1_000_000, us % 1_000_000)
}
