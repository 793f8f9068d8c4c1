//! Durable QoS 1 throughput and recovery time; prints tables for io-mio/BENCHMARKS.md.
//!
//! `cargo bench -p midge --bench persist` (add `-- quick` for shorter runs). Each row starts a
//! fresh broker on an ephemeral port with persistence in a temporary directory, one persistent
//! QoS 1 subscriber consuming everything (so every message is stored: with no persistent
//! subscriber there is nothing to store), and N publishers over loopback, each sending QoS 1
//! messages one at a time and waiting for the PUBACK before the next. The reference is
//! Mosquitto (`/usr/sbin/mosquitto`, skipped if absent) with `persistence true`, which
//! acknowledges from memory and saves a snapshot every `autosave_interval`.
//!
//! Recovery: a log of 1,000,000 small QoS 1 messages queued for one offline persistent
//! subscriber is written (as the broker writes it: a message and its delivery per record pair,
//! 100 messages per batch); the time from starting `midge` to its `listening on` line is
//! measured replaying that log, and again from the snapshot midge writes after the replay.

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use midge_core::codec::{ByteString, PublishProperties, QoS};
use midge_core::persist::{Record, StoredMessage, StoredSubscription};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broker {
    MidgeAlways,
    MidgePeriodic,
    Mosquitto,
}

impl Broker {
    fn name(self) -> &'static str {
        match self {
            Broker::MidgeAlways => "midge, persistence_sync always",
            Broker::MidgePeriodic => "midge, persistence_sync periodic 1000",
            Broker::Mosquitto => "Mosquitto 2.0.11, persistence true",
        }
    }
}

/// A broker process for one row.
struct Running {
    child: Child,
    addr: std::net::SocketAddr,
    log: Option<Arc<Lines>>,
}

impl Running {
    fn stop(mut self) -> Option<u64> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = wait_exit(&mut self.child, Duration::from_secs(30));
        let _ = self.child.kill();
        let _ = self.child.wait();
        // midge's last line: "persistence log closed at LSN n: ... bytes, F fsyncs, ..."
        let log = self.log.as_ref()?;
        log.wait_line(0, "persistence log closed", WAIT)?
            .split(", ")
            .find_map(|part| part.strip_suffix(" fsyncs")?.parse().ok())
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(broker: Broker, dir: &Path) -> Running {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    match broker {
        Broker::MidgeAlways | Broker::MidgePeriodic => {
            let sync = if broker == Broker::MidgePeriodic {
                "persistence_sync periodic 1000\n"
            } else {
                ""
            };
            let conf = format!(
                "listener 0 127.0.0.1\nallow_anonymous true\nconnection_messages false\n\
                 persistence true\npersistence_location {}\n{sync}",
                data.display()
            );
            let path = dir.join("midge.conf");
            std::fs::write(&path, conf).unwrap();
            let mut child = Command::new(midge_bin())
                .arg("-c")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let log = Lines::collect(child.stderr.take().unwrap(), "midge");
            let line = log
                .wait_line(0, "listening on", WAIT)
                .expect("midge started");
            let addr = line.rsplit("listening on ").next().unwrap();
            let addr = addr.split(' ').next().unwrap().parse().unwrap();
            Running {
                child,
                addr,
                log: Some(log),
            }
        }
        Broker::Mosquitto => {
            let port = free_port();
            let conf = format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nlog_dest none\n",
                data.display()
            );
            let path = dir.join("mosquitto.conf");
            std::fs::write(&path, conf).unwrap();
            let child = Command::new(MOSQUITTO)
                .arg("-c")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let addr = ([127, 0, 0, 1], port).into();
            assert!(
                wait_until(WAIT, || std::net::TcpStream::connect(addr).is_ok()),
                "mosquitto did not start"
            );
            Running {
                child,
                addr,
                log: None,
            }
        }
    }
}

struct Row {
    broker: Broker,
    publishers: usize,
    msgs_per_sec: f64,
    fsyncs_per_sec: Option<f64>,
}

/// N publishers for `duration`, one persistent subscriber consuming.
fn throughput(broker: Broker, publishers: usize, duration: Duration) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let running = start(broker, dir.path());
    let addr = running.addr;

    let mut options = ConnectOptions::new(V311, "bench-sub");
    options.connect.clean_start = false;
    let mut sub = Client::connect_with(tcp(addr), options);
    sub.sub("bench/#", QoS::AtLeastOnce);
    let stop_sub = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let subscriber = {
        let (stop, received) = (stop_sub.clone(), received.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if sub.try_recv_publish(Duration::from_millis(100)).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let barrier = Arc::new(Barrier::new(publishers + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..publishers)
        .map(|i| {
            let (barrier, stop) = (barrier.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr, V311, &format!("bench-pub-{i}"));
                let topic = format!("bench/{i}");
                let payload = [b'x'; 64];
                barrier.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    c.publish(&topic, &payload, QoS::AtLeastOnce, false);
                    n += 1;
                }
                n
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let elapsed = started.elapsed().as_secs_f64();
    stop_sub.store(true, Ordering::Relaxed);
    subscriber.join().unwrap();
    let fsyncs = running.stop();
    Row {
        broker,
        publishers,
        msgs_per_sec: sent as f64 / elapsed,
        fsyncs_per_sec: fsyncs.map(|f| f as f64 / elapsed),
    }
}

/// Writes a log of `n` QoS 1 messages queued for the offline persistent session `sub`.
fn write_queue_log(data: &Path, n: u64) -> u64 {
    std::fs::create_dir_all(data).unwrap();
    let client_id = ByteString::from("sub");
    let mut out = BytesMut::with_capacity(128 << 20);
    let mut lsn = 0;
    let mut put = |r: Record, out: &mut BytesMut| {
        lsn += 1;
        r.encode(lsn, out);
    };
    put(
        Record::SessionOpen {
            client_id: client_id.clone(),
            expiry_secs: u32::MAX,
        },
        &mut out,
    );
    put(
        Record::Subscribe {
            client_id: client_id.clone(),
            filter: ByteString::from("t/#"),
            options: StoredSubscription {
                qos: QoS::AtLeastOnce,
                no_local: false,
                retain_as_published: false,
                subscription_id: None,
            },
        },
        &mut out,
    );
    put(Record::Commit, &mut out);
    let topic = ByteString::from("t/sensor");
    for id in 1..=n {
        let message = StoredMessage {
            id,
            topic: topic.clone(),
            payload: Bytes::from(format!("reading {id:08}")),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: None,
        };
        put(Record::Message(message), &mut out);
        put(
            Record::Enqueue {
                client_id: client_id.clone(),
                delivery_id: id,
                message_id: id,
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Vec::new(),
            },
            &mut out,
        );
        if id % 100 == 0 {
            put(Record::Commit, &mut out);
        }
    }
    put(Record::Commit, &mut out);
    std::fs::write(data.join(format!("midge-{:020}.log", 1)), &out).unwrap();
    out.len() as u64
}

/// Starts midge on `dir` and returns the time to its `listening on` line, and the process.
fn time_start(dir: &Path, conf: &str) -> (Duration, Running) {
    let path = dir.join("midge.conf");
    std::fs::write(&path, conf).unwrap();
    let started = Instant::now();
    let mut child = Command::new(midge_bin())
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Lines::collect(child.stderr.take().unwrap(), "midge");
    let line = log
        .wait_line(0, "listening on", Duration::from_secs(300))
        .expect("midge started");
    let elapsed = started.elapsed();
    let addr = line.rsplit("listening on ").next().unwrap();
    let addr = addr.split(' ').next().unwrap().parse().unwrap();
    let running = Running {
        child,
        addr,
        log: Some(log),
    };
    (elapsed, running)
}

fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn recovery(n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bytes = write_queue_log(&data, n);
    // A snapshot a second after the replay (it is also due by size for a large log).
    let conf = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}\n\
         autosave_interval 1\n",
        data.display()
    );
    println!(
        "\nRecovery of {n} queued QoS 1 messages ({} MB of log):",
        bytes / 1_000_000
    );
    println!("| Start from | Time to listening | RSS after start |");
    println!("|---|---|---|");
    let (replay, running) = time_start(dir.path(), &conf);
    let rss = rss_mib(running.child.id());
    let log = running.log.clone().unwrap();
    assert!(
        log.wait_line(0, "snapshot at LSN", Duration::from_secs(300))
            .is_some(),
        "no snapshot after the replay"
    );
    println!("| log replay | {:.2} s | {rss} MiB |", replay.as_secs_f64());
    running.stop();
    let (from_snapshot, running) = time_start(dir.path(), &conf);
    let rss = rss_mib(running.child.id());
    println!(
        "| snapshot | {:.2} s | {rss} MiB |",
        from_snapshot.as_secs_f64()
    );
    // The messages are there: the subscriber gets the first one.
    let mut options = ConnectOptions::new(V311, "sub");
    options.connect.clean_start = false;
    let mut sub = Client::connect_with(tcp(running.addr), options);
    let first = sub.recv_publish();
    assert_eq!(&first.payload[..], b"reading 00000001");
    drop(sub);
    running.stop();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --benches` runs benches with --bench absent: do nothing then.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let quick = args.iter().any(|a| a == "quick");
    if let Ok(only) = std::env::var("PERSIST_BENCH_ONLY") {
        // "always:100" runs one row, "recovery:N" the recovery of N messages.
        let (mode, n) = only.split_once(':').expect("MODE:N");
        if mode == "recovery" {
            recovery(n.parse().unwrap());
            return;
        }
        let broker = match mode {
            "always" => Broker::MidgeAlways,
            "periodic" => Broker::MidgePeriodic,
            _ => Broker::Mosquitto,
        };
        let secs = std::env::var("PERSIST_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5);
        let row = throughput(broker, n.parse().unwrap(), Duration::from_secs(secs));
        println!(
            "{:.0} msgs/s, {:?} fsyncs/s",
            row.msgs_per_sec, row.fsyncs_per_sec
        );
        return;
    }
    let duration = Duration::from_secs(if quick { 1 } else { 4 });
    let _ = rlimit::increase_nofile_limit(4096);
    let mosquitto = Path::new(MOSQUITTO).exists();
    if !mosquitto {
        println!("NOTICE: {MOSQUITTO} not found; the Mosquitto reference is skipped");
    }
    let mut brokers = vec![Broker::MidgeAlways, Broker::MidgePeriodic];
    if mosquitto {
        brokers.push(Broker::Mosquitto);
    }
    let mut rows = Vec::new();
    for publishers in [1, 10, 100] {
        for &broker in &brokers {
            // Let the disk settle (the last row's files were just deleted, and this
            // machine's file system discards freed blocks online).
            let _ = Command::new("sync").status();
            std::thread::sleep(Duration::from_secs(1));
            let row = throughput(broker, publishers, duration);
            eprintln!(
                "{} x{publishers}: {:.0} msgs/s",
                broker.name(),
                row.msgs_per_sec
            );
            rows.push(row);
        }
    }
    println!("\nAcknowledged QoS 1 publishes over loopback ({duration:?} per row):");
    println!("| Broker | Publishers | msgs/s | fsyncs/s | msgs per fsync | vs Mosquitto |");
    println!("|---|---|---|---|---|---|");
    for row in &rows {
        let reference = rows
            .iter()
            .find(|r| r.broker == Broker::Mosquitto && r.publishers == row.publishers)
            .map(|r| r.msgs_per_sec);
        let fsyncs = row
            .fsyncs_per_sec
            .map_or("n/a".to_owned(), |f| format!("{f:.0}"));
        let per_fsync = row
            .fsyncs_per_sec
            .filter(|f| *f > 0.0)
            .map_or("n/a".to_owned(), |f| format!("{:.1}", row.msgs_per_sec / f));
        let ratio = reference.map_or("n/a".to_owned(), |m| {
            format!("{:.2}x", row.msgs_per_sec / m)
        });
        println!(
            "| {} | {} | {:.0} | {fsyncs} | {per_fsync} | {ratio} |",
            row.broker.name(),
            row.publishers,
            row.msgs_per_sec
        );
    }
    recovery(if quick { 100_000 } else { 1_000_000 });
}
