//! Persistence in the daemon: state survives restarts and crashes, damage is repaired when a
//! crash explains it and refused otherwise, a full disk stops acknowledgements, and — the crash
//! test — every message acknowledged to its publisher reaches every persistent subscriber
//! across `kill -9` at random moments, QoS 2 exactly once and QoS 1 at least once.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use midge_core::codec::{
    ByteString, Disconnect, DisconnectReason, Packet, PacketId, ProtocolVersion, PubAck, PubComp,
    PubRec, PubRel, PublishProperties, QoS, QosPid,
};
use midge_core::persist::{Record, StoredMessage, StoredSubscription};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn config(data: &Path, extra: &str) -> String {
    format!(
        "listener 0 127.0.0.1\nallow_anonymous true\nconnection_messages false\n\
         max_queued_messages 0\npersistence true\npersistence_location {}\n{extra}",
        data.display()
    )
}

fn persistent(version: ProtocolVersion, client_id: &str) -> ConnectOptions {
    let mut options = ConnectOptions::new(version, client_id);
    options.connect.clean_start = false;
    if version == V5 {
        options.connect.properties.session_expiry_interval = Some(3600);
    }
    options
}

/// Connects with a persistent session; returns the client and the CONNACK's session present.
fn connect_persistent(addr: SocketAddr, version: ProtocolVersion, id: &str) -> (Client, bool) {
    let mut client = Client::new(tcp(addr), version);
    let ack = client.handshake(persistent(version, id));
    assert!(!ack.reason.is_error(), "CONNACK refused: {ack:?}");
    (client, ack.session_present)
}

/// Files in `dir` with the given suffix.
fn files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Receives `n` messages (acknowledging them) and returns their payloads.
fn receive(client: &mut Client, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| String::from_utf8_lossy(&client.recv_publish().payload).into_owned())
        .collect()
}

fn expect_nothing(client: &mut Client) {
    match client.try_recv(Duration::from_millis(200)) {
        Err(RecvError::Timeout) => {}
        other => panic!("expected nothing more, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------------------
// Restarts, torn tails, snapshots
// ------------------------------------------------------------------------------------------

#[test]
fn queued_messages_sessions_and_retained_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let conf = config(&data, "");
    let mut daemon = Daemon::start(dir.path(), &conf);
    for (version, id) in [(V311, "sub-311"), (V5, "sub-5")] {
        let (mut sub, present) = connect_persistent(daemon.addr(), version, id);
        assert!(!present);
        sub.sub("t/#", QoS::ExactlyOnce);
        sub.disconnect();
    }
    let mut publ = Client::connect(daemon.addr(), V5, "pub");
    publ.publish("t/1", b"one", QoS::AtLeastOnce, false);
    publ.publish("t/2", b"two", QoS::ExactlyOnce, false);
    publ.publish("r", b"kept", QoS::AtLeastOnce, true);
    assert!(daemon.terminate().success());
    assert!(
        daemon
            .log
            .wait_line(0, "persistence log closed", WAIT)
            .is_some(),
        "the log is flushed at shutdown"
    );

    let daemon = Daemon::start(dir.path(), &conf);
    assert!(
        daemon
            .log
            .wait_line(0, "recovered 2 sessions", WAIT)
            .is_some()
    );
    let mut subs: Vec<Client> = [(V311, "sub-311"), (V5, "sub-5")]
        .into_iter()
        .map(|(version, id)| {
            let (mut sub, present) = connect_persistent(daemon.addr(), version, id);
            assert!(present, "{id}: the session survived");
            assert_eq!(receive(&mut sub, 2), ["one", "two"], "{id}");
            expect_nothing(&mut sub);
            sub
        })
        .collect();
    // The subscriptions survived too.
    let mut publ = Client::connect(daemon.addr(), V311, "pub2");
    publ.publish("t/3", b"three", QoS::AtLeastOnce, false);
    for sub in &mut subs {
        assert_eq!(receive(sub, 1), ["three"]);
    }
    let mut fresh = Client::connect(daemon.addr(), V311, "fresh");
    fresh.sub("r", QoS::AtLeastOnce);
    fresh.expect_message("r", b"kept");
}

#[test]
fn a_torn_tail_is_cut_off_and_the_daemon_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let conf = config(&data, "");
    let mut daemon = Daemon::start(dir.path(), &conf);
    let (sub, _) = connect_persistent(daemon.addr(), V311, "sub");
    let mut sub = sub;
    sub.sub("t", QoS::AtLeastOnce);
    sub.disconnect();
    let mut publ = Client::connect(daemon.addr(), V311, "pub");
    for i in 0..5 {
        publ.publish("t", format!("m{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    daemon.signal("KILL");
    daemon.wait_exit();

    // What a crash in the middle of the next write leaves: part of a frame.
    let segment = data.join(&files(&data, ".log")[0]);
    let mut partial = BytesMut::new();
    Record::Commit.encode(1_000, &mut partial);
    let len = std::fs::metadata(&segment).unwrap().len();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(&partial[..9]);
    std::fs::write(&segment, bytes).unwrap();

    let daemon = Daemon::start(dir.path(), &conf);
    let line = daemon
        .log
        .wait_line(0, "cut off", WAIT)
        .expect("truncation logged");
    assert!(line.contains(&format!("at byte offset {len}")), "{line}");
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), len);
    let (mut sub, present) = connect_persistent(daemon.addr(), V311, "sub");
    assert!(present);
    assert_eq!(receive(&mut sub, 5), ["m0", "m1", "m2", "m3", "m4"]);
}

fn stored(id: u64, payload: &str) -> StoredMessage {
    StoredMessage {
        id,
        topic: ByteString::from("t"),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties::default(),
        expires_at: None,
    }
}

/// Writes a log of two segments by hand: a persistent session `sub` subscribed to `t`, and
/// messages m1..=m10 queued for it, m1..=m5 in the first segment. Returns the segments and
/// where each message's frame starts in its segment.
fn two_segments(data: &Path) -> (Vec<PathBuf>, Vec<usize>) {
    std::fs::create_dir_all(data).unwrap();
    let sub = ByteString::from("sub");
    let mut batches: Vec<Vec<Record>> = vec![vec![
        Record::SessionOpen {
            client_id: sub.clone(),
            expiry_secs: u32::MAX,
        },
        Record::Subscribe {
            client_id: sub.clone(),
            filter: ByteString::from("t"),
            options: StoredSubscription {
                qos: QoS::AtLeastOnce,
                no_local: false,
                retain_as_published: false,
                subscription_id: None,
            },
        },
        Record::Commit,
    ]];
    for i in 1..=10 {
        batches.push(vec![
            Record::Message(stored(i, &format!("m{i}"))),
            Record::Enqueue {
                client_id: sub.clone(),
                delivery_id: i,
                message_id: i,
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Vec::new(),
            },
            Record::Commit,
        ]);
    }
    let mut segments = Vec::new();
    let mut starts = Vec::new();
    let mut lsn = 1;
    for part in [&batches[..6], &batches[6..]] {
        let path = data.join(format!("midge-{lsn:020}.log"));
        let mut out = BytesMut::new();
        for batch in part {
            for record in batch {
                if matches!(record, Record::Message(_)) {
                    starts.push(out.len());
                }
                record.encode(lsn, &mut out);
                lsn += 1;
            }
        }
        std::fs::write(&path, &out).unwrap();
        segments.push(path);
    }
    (segments, starts)
}

#[test]
fn corruption_in_an_earlier_segment_refuses_to_start_unless_salvaging() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (segments, starts) = two_segments(&data);
    // A bit flip inside message m3's frame.
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    bytes[starts[2] + 24] ^= 0x10;
    std::fs::write(&segments[0], bytes).unwrap();
    let conf = config(&data, "");
    let conf_path = dir.path().join("midge.conf");
    std::fs::write(&conf_path, &conf).unwrap();

    let out = run_with_timeout(Command::new(midge_bin()).arg("-c").arg(&conf_path), WAIT);
    assert!(!out.status.success(), "midge started on a corrupt log");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{} at byte offset {}", segments[0].display(), starts[2]);
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("--salvage"), "{stderr}");

    let daemon = Daemon::start_with_args(dir.path(), &conf, &["--salvage"]);
    assert!(daemon.log.wait_line(0, "salvage: skipped", WAIT).is_some());
    let (mut sub, present) = connect_persistent(daemon.addr(), V311, "sub");
    assert!(present);
    let got = receive(&mut sub, 9);
    let want: Vec<String> = (1..=10)
        .filter(|i| *i != 3)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(got, want);
    drop(daemon);

    // The damaged segment was moved aside: the next start is clean.
    assert_eq!(files(&data, ".damaged").len(), 1);
    let daemon = Daemon::start(dir.path(), &conf);
    assert!(
        daemon
            .log
            .wait_line(0, "recovered 1 sessions", WAIT)
            .is_some()
    );
}

#[test]
fn snapshots_replace_old_segments_and_recover_with_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A snapshot every second.
    let conf = config(&data, "autosave_interval 1\n");
    let mut daemon = Daemon::start(dir.path(), &conf);
    let (mut sub, _) = connect_persistent(daemon.addr(), V5, "sub");
    sub.sub("t", QoS::ExactlyOnce);
    sub.disconnect();
    let mut publ = Client::connect(daemon.addr(), V311, "pub");
    for i in 0..20 {
        publ.publish("t", format!("a{i}").as_bytes(), QoS::ExactlyOnce, false);
    }
    let first_segment = files(&data, ".log")[0].clone();
    // The 20 messages; the broker's own retained $SYS values are never stored.
    let line = daemon
        .log
        .wait_line(0, "snapshot at LSN", WAIT)
        .expect("a snapshot");
    assert!(line.contains("20 messages"), "{line}");
    assert!(
        wait_until(WAIT, || !data.join(&first_segment).exists()),
        "the snapshot replaced the first segment: {:?}",
        files(&data, "")
    );
    for i in 0..5 {
        publ.publish("t", format!("b{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    daemon.signal("KILL");
    daemon.wait_exit();
    assert_eq!(files(&data, ".snap").len(), 1, "{:?}", files(&data, ""));

    let daemon = Daemon::start(dir.path(), &conf);
    let line = daemon.log.wait_line(0, "recovered", WAIT).unwrap();
    assert!(line.contains("snapshot"), "{line}");
    let (mut sub, present) = connect_persistent(daemon.addr(), V5, "sub");
    assert!(present);
    let got = receive(&mut sub, 25);
    let want: Vec<String> = (0..20)
        .map(|i| format!("a{i}"))
        .chain((0..5).map(|i| format!("b{i}")))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn sigterm_fsyncs_the_log_even_in_periodic_mode() {
    // periodic mode with a long interval: acknowledgements go out once written, and SIGTERM
    // still fsyncs before exit.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let conf = config(&data, "persistence_sync periodic 60000\n");
    let mut daemon = Daemon::start(dir.path(), &conf);
    let (mut sub, _) = connect_persistent(daemon.addr(), V311, "sub");
    sub.sub("t", QoS::AtLeastOnce);
    sub.disconnect();
    let mut publ = Client::connect(daemon.addr(), V311, "pub");
    publ.publish("t", b"x", QoS::AtLeastOnce, false);
    assert!(daemon.terminate().success());
    let line = daemon
        .log
        .wait_line(0, "persistence log closed", WAIT)
        .unwrap();
    assert!(line.contains(" 1 fsyncs"), "{line}");
}

// ------------------------------------------------------------------------------------------
// A full disk
// ------------------------------------------------------------------------------------------

/// A small tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = io::Write::write_all(
                &mut io::stderr(),
                b"NOTICE: cannot mount a tmpfs (needs root); skipping the full disk test\n",
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_acknowledgements_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(_tmpfs) = Tmpfs::mount(&data, "1m") else {
        return;
    };
    // Leave room for a few hundred KiB of log.
    let filler = data.join("filler");
    std::fs::write(&filler, vec![0u8; 600 * 1024]).unwrap();
    let conf = config(&data, "autosave_interval 0\n");
    let mut daemon = Daemon::start(dir.path(), &conf);
    let (mut sub, _) = connect_persistent(daemon.addr(), V311, "sub");
    sub.sub("t", QoS::AtLeastOnce);
    sub.disconnect();

    let mut publ = Client::new(tcp(daemon.addr()), V311);
    publ.handshake(ConnectOptions::new(V311, "pub"));
    let payload = vec![b'x'; 4096];
    let mut acked = 0u16;
    let mut stalled = None;
    for i in 1..=200u16 {
        let id = PacketId::new(i).unwrap();
        publ.send(&publish_packet("t", &payload, QoS::AtLeastOnce, false, id));
        match publ.try_recv(Duration::from_millis(1500)) {
            Ok(Packet::PubAck(a)) if a.packet_id == id => acked = i,
            Err(RecvError::Timeout) => {
                stalled = Some(id);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let stalled = stalled.expect("the disk filled up");
    assert!(acked > 10, "some messages fit: {acked}");
    let line = daemon
        .log
        .wait_line(0, "cannot write the persistence log", WAIT)
        .expect("the failure is logged");
    assert!(line.contains("ERROR"), "{line}");
    // Still nothing, however long it waits.
    assert!(matches!(
        publ.try_recv(Duration::from_millis(500)),
        Err(RecvError::Timeout)
    ));

    std::fs::remove_file(&filler).unwrap();
    match publ.try_recv(WAIT) {
        Ok(Packet::PubAck(a)) => assert_eq!(a.packet_id, stalled),
        other => panic!("expected the PUBACK once space returned, got {other:?}"),
    }
    assert!(daemon.log.wait_line(0, "succeed again", WAIT).is_some());
    let errors = daemon
        .log
        .snapshot()
        .iter()
        .filter(|l| l.contains("cannot write the persistence log"))
        .count();
    assert_eq!(errors, 1, "logged once per failure episode");

    // Everything acknowledged is there after a crash.
    daemon.signal("KILL");
    daemon.wait_exit();
    let daemon = Daemon::start(dir.path(), &conf);
    let (mut sub, _) = connect_persistent(daemon.addr(), V311, "sub");
    for _ in 0..stalled.get() {
        assert_eq!(sub.recv_publish().payload.len(), payload.len());
    }
}

// ------------------------------------------------------------------------------------------
// The crash test
// ------------------------------------------------------------------------------------------

/// Where the daemon listens now; `None` while it is down.
type Addr = Arc<Mutex<Option<SocketAddr>>>;

/// Connects and completes CONNECT/CONNACK, retrying until the daemon is up (or `stop`).
fn reconnect(addr: &Addr, options: &ConnectOptions, stop: &AtomicBool) -> Option<(Client, bool)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "could not reconnect for 30 s");
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        let current = *addr.lock().unwrap();
        if let Some(a) = current
            && let Ok(stream) = TcpStream::connect_timeout(&a, Duration::from_secs(1))
        {
            let _ = stream.set_nodelay(true);
            let _ = stream.set_write_timeout(Some(WAIT));
            let mut client = Client::new(stream, options.connect.protocol_version);
            if client
                .try_send(&Packet::from(options.connect.clone()))
                .is_ok()
            {
                match client.try_recv(WAIT) {
                    Ok(Packet::ConnAck(ack)) if !ack.reason.is_error() => {
                        return Some((client, ack.session_present));
                    }
                    Ok(other) => panic!("expected CONNACK, got {other:?}"),
                    // The daemon went down again.
                    Err(_) => {}
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A publisher's view of a message in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// PUBLISH sent, no acknowledgement yet.
    Sent,
    /// PUBREC received (QoS 2): PUBREL sent, PUBCOMP awaited.
    Released,
}

#[derive(Debug, Default)]
struct PublisherResult {
    /// Sequence numbers the daemon acknowledged (PUBACK, or PUBREC for QoS 2).
    acked: BTreeSet<u64>,
    reconnects: u32,
}

/// Publishes `name:SEQ` on `seq/NAME` at `qos` with a window of messages in flight, as a
/// client with a persistent session must: after a reconnect it resends each unacknowledged
/// PUBLISH with DUP and its packet id, and PUBREL for each PUBREC it got. Stops publishing
/// new messages once `stop_publishing` is set and returns once nothing is in flight.
fn publisher(
    addr: Addr,
    name: String,
    version: ProtocolVersion,
    qos: QoS,
    stop_publishing: Arc<AtomicBool>,
) -> PublisherResult {
    const WINDOW: usize = 4;
    let never = AtomicBool::new(false);
    let options = persistent(version, &name);
    let topic = format!("seq/{name}");
    let mut result = PublisherResult::default();
    let (mut client, present) = reconnect(&addr, &options, &never).unwrap();
    assert!(!present, "{name}: a new session");
    let mut in_flight: BTreeMap<u16, (u64, Stage)> = BTreeMap::new();
    let mut order: Vec<u16> = Vec::new();
    let mut next_seq = 0u64;
    let mut next_id = 0u16;
    loop {
        let stopping = stop_publishing.load(Ordering::Relaxed);
        if stopping && in_flight.is_empty() {
            let disconnect = Disconnect::new(DisconnectReason::NormalDisconnection);
            let _ = client.try_send(&Packet::Disconnect(disconnect));
            return result;
        }
        let mut lost = false;
        while !stopping && in_flight.len() < WINDOW && !lost {
            next_id = next_id % 60_000 + 1;
            next_seq += 1;
            let id = PacketId::new(next_id).unwrap();
            let payload = format!("{name}:{next_seq}");
            in_flight.insert(next_id, (next_seq, Stage::Sent));
            order.push(next_id);
            lost = client
                .try_send(&publish_packet(&topic, payload.as_bytes(), qos, false, id))
                .is_err();
        }
        if !lost {
            match client.try_recv(Duration::from_millis(50)) {
                Ok(Packet::PubAck(a)) => {
                    let (seq, _) = in_flight
                        .remove(&a.packet_id.get())
                        .unwrap_or_else(|| panic!("{name}: PUBACK for {a:?} not in flight"));
                    assert!(!a.reason.is_error(), "{name}: {a:?}");
                    result.acked.insert(seq);
                }
                Ok(Packet::PubRec(r)) => {
                    let entry = in_flight
                        .get_mut(&r.packet_id.get())
                        .unwrap_or_else(|| panic!("{name}: PUBREC for {r:?} not in flight"));
                    assert!(!r.reason.is_error(), "{name}: {r:?}");
                    result.acked.insert(entry.0);
                    entry.1 = Stage::Released;
                    lost = client
                        .try_send(&Packet::PubRel(PubRel::success(r.packet_id)))
                        .is_err();
                }
                Ok(Packet::PubComp(c)) => {
                    let (_, stage) = in_flight
                        .remove(&c.packet_id.get())
                        .unwrap_or_else(|| panic!("{name}: PUBCOMP for {c:?} not in flight"));
                    assert_eq!(stage, Stage::Released, "{name}: PUBCOMP before PUBREC");
                }
                Ok(other) => panic!("{name}: unexpected {other:?}"),
                Err(RecvError::Timeout) => {}
                Err(_) => lost = true,
            }
        }
        if lost {
            let (c, present) = reconnect(&addr, &options, &never).unwrap();
            assert!(present, "{name}: the session survived the crash");
            client = c;
            result.reconnects += 1;
            // [MQTT-4.4.0-1]: unacknowledged PUBLISH and PUBREL again, in their order.
            order.retain(|id| in_flight.contains_key(id));
            for id in &order {
                let (seq, stage) = in_flight[id];
                let pid = PacketId::new(*id).unwrap();
                let packet = match stage {
                    Stage::Sent => {
                        let payload = format!("{name}:{seq}");
                        let mut p =
                            match publish_packet(&topic, payload.as_bytes(), qos, false, pid) {
                                Packet::Publish(p) => p,
                                _ => unreachable!(),
                            };
                        p.dup = true;
                        Packet::Publish(p)
                    }
                    Stage::Released => Packet::PubRel(PubRel::success(pid)),
                };
                if client.try_send(&packet).is_err() {
                    break;
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct SubscriberResult {
    /// Deliveries of each `name:seq` payload, and the QoS it came with.
    received: BTreeMap<String, (u32, QoS)>,
    reconnects: u32,
}

/// A persistent subscriber to `seq/#` at QoS 2, acknowledging as the receiver must: a QoS 2
/// packet id is accepted once and then only acknowledged again until PUBREL releases it, across
/// reconnects (the session's state). Runs until `done` holds over what it received.
fn subscriber(
    addr: Addr,
    name: String,
    version: ProtocolVersion,
    done: impl Fn(&SubscriberResult) -> bool,
    give_up: Arc<AtomicBool>,
) -> SubscriberResult {
    let options = persistent(version, &name);
    let mut result = SubscriberResult::default();
    let (mut client, present) = reconnect(&addr, &options, &give_up).unwrap();
    assert!(!present);
    client.sub("seq/#", QoS::ExactlyOnce);
    // QoS 2 packet ids received and not yet released.
    let mut unreleased: BTreeSet<PacketId> = BTreeSet::new();
    loop {
        if done(&result) || give_up.load(Ordering::Relaxed) {
            return result;
        }
        let mut lost = false;
        match client.try_recv(Duration::from_millis(50)) {
            Ok(Packet::Publish(p)) => {
                let (qos, reply, new) = match p.qos_pid {
                    QosPid::AtMostOnce => panic!("{name}: QoS 0 delivery {p:?}"),
                    QosPid::AtLeastOnce(id) => {
                        (QoS::AtLeastOnce, Packet::PubAck(PubAck::success(id)), true)
                    }
                    QosPid::ExactlyOnce(id) => {
                        // A resend of a message accepted and not yet released is only
                        // acknowledged again.
                        let new = unreleased.insert(id);
                        assert!(
                            new || p.dup,
                            "{name}: a new message reused unreleased {id:?}"
                        );
                        (QoS::ExactlyOnce, Packet::PubRec(PubRec::success(id)), new)
                    }
                };
                if new {
                    let payload = String::from_utf8_lossy(&p.payload).into_owned();
                    result.received.entry(payload).or_insert((0, qos)).0 += 1;
                }
                lost = client.try_send(&reply).is_err();
            }
            Ok(Packet::PubRel(r)) => {
                unreleased.remove(&r.packet_id);
                lost = client
                    .try_send(&Packet::PubComp(PubComp::success(r.packet_id)))
                    .is_err();
            }
            Ok(other) => panic!("{name}: unexpected {other:?}"),
            Err(RecvError::Timeout) => {}
            Err(_) => lost = true,
        }
        if lost {
            let Some((c, present)) = reconnect(&addr, &options, &give_up) else {
                return result;
            };
            assert!(present, "{name}: the session survived the crash");
            client = c;
            result.reconnects += 1;
        }
    }
}

/// A small xorshift generator: the crash test's timing, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs the crash test for `crashes` kills.
fn crash_test(crashes: u32) {
    let seed = std::env::var("MIDGE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let _ = io::Write::write_all(
        &mut io::stderr(),
        format!("crash test: {crashes} crashes, MIDGE_CRASH_SEED={seed}\n").as_bytes(),
    );
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Subscribers take messages as fast as publishers send them; a snapshot every second
    // keeps the log short, so crashes also hit snapshots being written.
    let conf = config(&data, "max_inflight_messages 100\nautosave_interval 1\n");
    let mut daemon = Daemon::start(dir.path(), &conf);
    let addr: Addr = Arc::new(Mutex::new(Some(daemon.addr())));

    // Subscribers first, so every message published finds their subscriptions.
    let give_up = Arc::new(AtomicBool::new(false));
    let expected: Arc<Mutex<Option<BTreeMap<String, QoS>>>> = Arc::new(Mutex::new(None));
    let subscribers: Vec<_> = [("sub-311", V311), ("sub-5", V5)]
        .into_iter()
        .map(|(name, version)| {
            let (addr, give_up, expected) = (addr.clone(), give_up.clone(), expected.clone());
            let subscribed = Arc::new(AtomicBool::new(false));
            let flag = subscribed.clone();
            let handle = std::thread::spawn(move || {
                let done = move |r: &SubscriberResult| {
                    flag.store(true, Ordering::Relaxed);
                    expected
                        .lock()
                        .unwrap()
                        .as_ref()
                        .is_some_and(|e| e.keys().all(|k| r.received.contains_key(k)))
                };
                subscriber(addr, name.to_owned(), version, done, give_up)
            });
            assert!(wait_until(WAIT, || subscribed.load(Ordering::Relaxed)));
            (name, handle)
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = [
        ("pub1-311", V311, QoS::AtLeastOnce),
        ("pub2-311", V311, QoS::ExactlyOnce),
        ("pub1-5", V5, QoS::AtLeastOnce),
        ("pub2-5", V5, QoS::ExactlyOnce),
    ]
    .into_iter()
    .map(|(name, version, qos)| {
        let (addr, stop) = (addr.clone(), stop.clone());
        let handle =
            std::thread::spawn(move || publisher(addr, name.to_owned(), version, qos, stop));
        (name, qos, handle)
    })
    .collect();

    // What the daemons logged about their log: torn tails cut off, snapshots written,
    // unfinished snapshots removed, recoveries that started from a snapshot.
    let mut seen = [0usize; 4];
    let mut count = |daemon: &Daemon| {
        let lines = daemon.log.snapshot();
        let needles = [
            "cut off",
            "snapshot at LSN",
            "unfinished snapshot",
            "(snapshot ",
        ];
        for (n, needle) in seen.iter_mut().zip(needles) {
            *n += lines.iter().filter(|l| l.contains(needle)).count();
        }
    };
    for _ in 0..crashes {
        // Some crashes come after a second or more, during or after a snapshot.
        std::thread::sleep(Duration::from_millis(100 + rng.below(1400)));
        *addr.lock().unwrap() = None;
        daemon.signal("KILL");
        daemon.wait_exit();
        count(&daemon);
        daemon = Daemon::start(dir.path(), &conf);
        *addr.lock().unwrap() = Some(daemon.addr());
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);

    let mut want: BTreeMap<String, QoS> = BTreeMap::new();
    let mut total_acked = 0;
    for (name, qos, handle) in publishers {
        let result = handle.join().expect("publisher");
        assert!(!result.acked.is_empty(), "{name} published nothing");
        total_acked += result.acked.len();
        for seq in result.acked {
            want.insert(format!("{name}:{seq}"), qos);
        }
    }
    *expected.lock().unwrap() = Some(want.clone());
    let draining = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    let watchdog = {
        let give_up = give_up.clone();
        std::thread::spawn(move || {
            while Instant::now() < deadline && !give_up.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            give_up.store(true, Ordering::Relaxed);
        })
    };
    for (name, handle) in subscribers {
        let result = handle.join().expect("subscriber");
        let missing: Vec<&String> = want
            .keys()
            .filter(|k| !result.received.contains_key(*k))
            .collect();
        assert!(
            missing.is_empty(),
            "{name}: {} of {} acknowledged messages not delivered within the time allowed, \
             e.g. {:?} (seed {seed})",
            missing.len(),
            want.len(),
            &missing[..missing.len().min(10)]
        );
        for (payload, (count, qos)) in &result.received {
            let published = want.get(payload).copied();
            if published == Some(QoS::ExactlyOnce) || payload.contains("pub2-") {
                assert_eq!(*count, 1, "{name}: QoS 2 {payload} delivered {count} times");
                assert_eq!(*qos, QoS::ExactlyOnce, "{name}: {payload}");
            }
        }
        let _ = io::Write::write_all(
            &mut io::stderr(),
            format!(
                "{name}: {} distinct messages, {} reconnects\n",
                result.received.len(),
                result.reconnects
            )
            .as_bytes(),
        );
    }
    give_up.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();
    let _ = io::Write::write_all(
        &mut io::stderr(),
        format!(
            "crash test: subscribers caught up in {:?}\n",
            draining.elapsed()
        )
        .as_bytes(),
    );
    let _ = io::Write::write_all(
        &mut io::stderr(),
        format!("crash test: {total_acked} messages acknowledged, all delivered\n").as_bytes(),
    );
    assert!(daemon.terminate().success());
    count(&daemon);
    let _ = io::Write::write_all(
        &mut io::stderr(),
        format!(
            "crash test: {} torn tails cut off, {} snapshots written, {} unfinished snapshots \
             removed, {} recoveries from a snapshot\n",
            seen[0], seen[1], seen[2], seen[3]
        )
        .as_bytes(),
    );
}

/// `kill -9` at random moments under QoS 1 and 2 traffic, a few times. For a longer run:
/// `MIDGE_CRASHES=200 cargo test -p midge --test persistence crash -- --ignored`.
#[test]
fn acknowledged_messages_survive_kill_9() {
    crash_test(
        std::env::var("MIDGE_CRASHES_QUICK")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
}

#[test]
#[ignore = "long: set MIDGE_CRASHES (default 100)"]
fn acknowledged_messages_survive_many_kill_9() {
    let crashes = std::env::var("MIDGE_CRASHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    crash_test(crashes);
}

/// Two daemons on one persistence directory would both append to its log: the second one
/// refuses to start, names the directory, and leaves the first one running undisturbed.
#[test]
fn a_second_daemon_on_the_same_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let conf = config(&data, "");
    let mut first = Daemon::start(dir.path(), &conf);
    let (mut sub, _) = connect_persistent(first.addr(), V311, "sub");
    sub.sub("t", QoS::AtLeastOnce);

    let second_dir = tempfile::tempdir().unwrap();
    let conf_path = second_dir.path().join("midge.conf");
    std::fs::write(&conf_path, &conf).unwrap();
    let out = run_with_timeout(Command::new(midge_bin()).arg("-c").arg(&conf_path), WAIT);
    assert!(!out.status.success(), "a second daemon started on {data:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another midge uses"), "{stderr}");
    assert!(stderr.contains(&data.display().to_string()), "{stderr}");

    let mut publisher = Client::connect(first.addr(), V311, "pub");
    publisher.publish("t", b"still here", QoS::AtLeastOnce, false);
    assert_eq!(receive(&mut sub, 1), ["still here"]);
    assert!(first.is_running());
    drop(sub);
    drop(first);

    // The lock went with the process: a new daemon starts on the directory, with its state.
    let daemon = Daemon::start(dir.path(), &conf);
    let (_sub, present) = connect_persistent(daemon.addr(), V311, "sub");
    assert!(present, "the session survived");
}
