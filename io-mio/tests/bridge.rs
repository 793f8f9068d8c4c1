//! Bridges between brokers (Mosquitto's `connection` sections): midge to midge, midge to
//! Mosquitto and Mosquitto to midge, over TCP and TLS, in MQTT 3.1.1 and 5.0, at QoS 1 and 2.
//! Every bridge here maps `out/#`, `in/#` and `both/#` under `local/` on the bridging broker to
//! `remote/` on the other, so each test checks renaming, direction and the absence of loops
//! together. Also: QoS 1 and 2 messages sent while the remote broker is down (restarted with
//! persistence) arrive once it is back, and the notification topic says whether the bridge is up.
//!
//! Mosquitto is the Debian package's `mosquitto`. Where it is missing, its tests are skipped
//! with a notice, except under CI (`CI` set), where .ci/run installs it and a missing binary
//! fails them. Mosquitto cannot listen on port 0 and say which port it got, so its ports are
//! picked free first (and picked again if another process takes one in between).

mod common;

use common::*;
use midge_core::codec::{ProtocolVersion, QoS};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bridges reconnect this fast in the tests (`restart_timeout`).
const RESTART: &str = "restart_timeout 1";
/// How long a bridge may take to (re)connect and subscribe.
const LINK_WAIT: Duration = Duration::from_secs(20);
/// How long a broker is watched for a message that must not come.
const QUIET: Duration = Duration::from_millis(700);

fn version_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V5 => "mqttv50",
        ProtocolVersion::V3_1_1 => "mqttv311",
        ProtocolVersion::V3_1 => "mqttv31",
    }
}

/// A TCP port nothing listens on now, for a broker that cannot pick its own.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn subdir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("create test directory");
    dir
}

/// The bridge section of the tests: `out/#`, `in/#` and `both/#` under `local/` here and
/// `remote/` there, at `qos`, with the remote client id (and so the notification topic) named
/// after the connection.
fn bridge_section(name: &str, address: &str, version: ProtocolVersion, qos: QoS) -> String {
    let q = qos as u8;
    format!(
        "connection {name}\naddress {address}\nremote_clientid {name}\n\
         bridge_protocol_version {}\ncleansession false\n{RESTART}\n\
         topic out/# out {q} local/ remote/\ntopic in/# in {q} local/ remote/\n\
         topic both/# both {q} local/ remote/\n",
        version_name(version)
    )
}

fn notification_topic(name: &str) -> String {
    format!("$SYS/broker/connection/{name}/state")
}

// ------------------------------------------------------------------------------------------
// Mosquitto
// ------------------------------------------------------------------------------------------

/// The broker binary: Debian puts it in /usr/sbin, which only root's PATH has.
fn mosquitto_bin() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

/// Whether the `mosquitto` broker can be run: where it cannot, the test is skipped with a
/// notice, except under CI, where .ci/run installs it.
fn mosquitto_available() -> bool {
    let found = Command::new(mosquitto_bin())
        .arg("-h")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("mosquitto is not installed; .ci/run installs it");
        }
        // Straight to the process's stderr: the harness hides what a passing test prints.
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: mosquitto is not installed; skipping this test"
        );
    }
    found
}

/// A running Mosquitto broker; dropping it stops it.
struct Mosquitto {
    child: Child,
    log: Arc<Lines>,
    dir: PathBuf,
    /// The plain listener, for the tests' clients.
    port: u16,
    /// The TLS listener, when the broker has one.
    tls_port: Option<u16>,
    config: String,
}

impl Mosquitto {
    /// Starts Mosquitto in `dir` with a plain listener (and a TLS one when `tls` holds its
    /// listener options) on free ports, then `body`. Ports another process took between
    /// picking and binding are picked again.
    fn start(dir: &Path, tls: Option<&str>, body: &str) -> Mosquitto {
        for _ in 0..5 {
            let port = free_port();
            let tls_port = tls.map(|_| free_port());
            if let Some(m) = Mosquitto::try_start(dir, port, tls_port, tls, body) {
                return m;
            }
        }
        panic!("mosquitto did not start on five pairs of free ports");
    }

    fn try_start(
        dir: &Path,
        port: u16,
        tls_port: Option<u16>,
        tls: Option<&str>,
        body: &str,
    ) -> Option<Mosquitto> {
        // Run as root (CI is), Mosquitto would switch to the mosquitto user, who cannot read a
        // private temporary directory: `user root` keeps it.
        let mut config = format!(
            "user root\nlog_dest stderr\nlog_type all\nper_listener_settings false\n\
             allow_anonymous true\nlistener {port} 127.0.0.1\n"
        );
        if let (Some(tls_port), Some(options)) = (tls_port, tls) {
            config += &format!("listener {tls_port} 127.0.0.1\n{options}");
        }
        config += body;
        let mut m = Mosquitto::spawn(dir, port, tls_port, config);
        m.wait_listening().then_some(m)
    }

    fn spawn(dir: &Path, port: u16, tls_port: Option<u16>, config: String) -> Mosquitto {
        let path = dir.join("mosquitto.conf");
        std::fs::write(&path, &config).expect("write mosquitto.conf");
        let mut child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mosquitto");
        let log = Lines::collect(child.stderr.take().expect("stderr"), "mosquitto");
        Mosquitto {
            child,
            log,
            dir: dir.to_path_buf(),
            port,
            tls_port,
            config,
        }
    }

    /// Waits until every listener accepts connections; false if Mosquitto exited instead (a
    /// port was taken in between, say).
    fn wait_listening(&mut self) -> bool {
        let ports: Vec<u16> = std::iter::once(self.port).chain(self.tls_port).collect();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.child.try_wait().expect("try_wait").is_some() {
                return false;
            }
            let up = ports.iter().all(|p| {
                std::net::TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], *p)),
                    Duration::from_millis(200),
                )
                .is_ok()
            });
            if up {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "mosquitto did not listen within {WAIT:?}; log:\n{}",
            self.log.snapshot().join("\n")
        );
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stops it (SIGTERM: with persistence it saves its database first).
    fn stop(&mut self) {
        send_signal(self.child.id(), "TERM");
        if wait_exit(&mut self.child, WAIT).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("mosquitto did not stop within {WAIT:?}");
        }
    }

    /// Starts it again after [`Mosquitto::stop`], on the same ports with the same
    /// configuration.
    fn start_again(&mut self) {
        let again = Mosquitto::spawn(&self.dir, self.port, self.tls_port, self.config.clone());
        *self = again;
        assert!(
            self.wait_listening(),
            "mosquitto did not start again; log:\n{}",
            self.log.snapshot().join("\n")
        );
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ------------------------------------------------------------------------------------------
// midge
// ------------------------------------------------------------------------------------------

/// A midge broker clients reach anonymously on a plain listener, then `extra`.
fn midge(dir: &Path, extra: &str) -> Daemon {
    Daemon::start(
        dir,
        &format!("listener 0 127.0.0.1\nallow_anonymous true\n{extra}"),
    )
}

/// midge on a fixed port, so that it can be restarted where a bridge looks for it.
fn midge_on(dir: &Path, port: u16, extra: &str) -> Daemon {
    Daemon::start(
        dir,
        &format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra}"),
    )
}

/// A TLS listener's options with the test PKI's files written in `dir`; clients must present a
/// certificate from the CA.
fn tls_listener_options(dir: &Path, pki: &Pki) -> String {
    format!(
        "{}require_certificate true\n",
        pki.write_server_files(dir, true)
    )
}

/// midge with a plain listener for the tests' clients and a TLS listener for bridges that
/// present a certificate from `pki`.
fn midge_with_tls(dir: &Path, pki: &Pki) -> Daemon {
    midge(
        dir,
        &format!("listener 0 127.0.0.1\n{}", tls_listener_options(dir, pki)),
    )
}

/// The bridge options of TLS to a remote that requires a client certificate from `pki`.
fn bridge_tls_options(dir: &Path, pki: &Pki) -> String {
    let client = pki.client("bridge");
    std::fs::write(dir.join("bridge-ca.pem"), pki.ca_pem()).expect("write CA");
    std::fs::write(dir.join("bridge.pem"), &client.cert).expect("write cert");
    std::fs::write(dir.join("bridge.key"), &client.key).expect("write key");
    format!(
        "bridge_cafile {}\nbridge_certfile {}\nbridge_keyfile {}\n",
        dir.join("bridge-ca.pem").display(),
        dir.join("bridge.pem").display(),
        dir.join("bridge.key").display()
    )
}

// ------------------------------------------------------------------------------------------
// What crosses
// ------------------------------------------------------------------------------------------

fn is_probe(payload: &[u8]) -> bool {
    payload.starts_with(b"probe")
}

/// Publishes QoS 0 probes on `from` until `subscriber` sees one on `to`: the bridge is then
/// connected and subscribed that way. Probes arriving later are skipped by the checks.
fn await_link(publisher: &mut Client, from: &str, subscriber: &mut Client, to: &str) {
    let deadline = Instant::now() + LINK_WAIT;
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        publisher.publish_qos0(from, format!("probe {n}").as_bytes());
        let until = Instant::now() + Duration::from_millis(300);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match subscriber.try_recv_publish(left) {
                Ok(p) if &*p.topic == to && is_probe(&p.payload) => return,
                Ok(p) if is_probe(&p.payload) => {}
                Ok(p) => panic!("unexpected message while probing: {p:?}"),
                Err(RecvError::Timeout) => break,
                Err(e) => panic!("subscriber failed while probing {from} -> {to}: {e:?}"),
            }
        }
    }
    panic!("nothing published on {from} reached {to} within {LINK_WAIT:?}: the bridge is not up");
}

/// The next `n` messages that are not probes, as (topic, payload, QoS), sorted.
fn receive(client: &mut Client, n: usize) -> Vec<(String, Vec<u8>, QoS)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + LINK_WAIT;
    while got.len() < n {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("only {got:?} of {n} messages arrived"));
        match client.try_recv_publish(left) {
            Ok(p) if is_probe(&p.payload) => {}
            Ok(p) => got.push((p.topic.to_string(), p.payload.to_vec(), p.qos_pid.qos())),
            Err(e) => panic!("after {got:?} of {n} messages: {e:?}"),
        }
    }
    got.sort();
    got
}

/// Checks no message but probes arrives for a while: nothing crossed where it must not, and
/// nothing came back round a loop.
fn expect_quiet(client: &mut Client, who: &str) {
    let until = Instant::now() + QUIET;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match client.try_recv_publish(left) {
            Ok(p) if is_probe(&p.payload) => {}
            Ok(p) => panic!("{who} got a message it must not: {p:?}"),
            Err(RecvError::Timeout) => return,
            Err(e) => panic!("{who}: {e:?}"),
        }
    }
}

fn expected(items: &[(&str, &str)], qos: QoS) -> Vec<(String, Vec<u8>, QoS)> {
    let mut v: Vec<_> = items
        .iter()
        .map(|(t, p)| ((*t).to_owned(), p.as_bytes().to_vec(), qos))
        .collect();
    v.sort();
    v
}

/// With a bridge from the broker at `local` to the broker at `remote`: `out` topics cross
/// from local to remote only, `in` topics from remote to local only, `both` either way and
/// exactly once (no loop), each renamed from `local/` to `remote/` and back, at `qos`.
fn check_bridge(local: SocketAddr, remote: SocketAddr, qos: QoS) {
    let mut local_sub = Client::connect(local, V5, "local-sub");
    local_sub.sub("local/#", qos);
    let mut remote_sub = Client::connect(remote, V5, "remote-sub");
    remote_sub.sub("remote/#", qos);
    let mut local_pub = Client::connect(local, V5, "local-pub");
    let mut remote_pub = Client::connect(remote, V5, "remote-pub");

    await_link(
        &mut local_pub,
        "local/out/probe",
        &mut remote_sub,
        "remote/out/probe",
    );
    await_link(
        &mut remote_pub,
        "remote/in/probe",
        &mut local_sub,
        "local/in/probe",
    );
    await_link(
        &mut local_pub,
        "local/both/probe",
        &mut remote_sub,
        "remote/both/probe",
    );
    await_link(
        &mut remote_pub,
        "remote/both/probe",
        &mut local_sub,
        "local/both/probe",
    );

    for topic in [
        "local/out/a",
        "remote/out/z",
        "remote/in/a",
        "local/in/z",
        "local/both/a",
        "remote/both/b",
    ] {
        let publisher = if topic.starts_with("local/") {
            &mut local_pub
        } else {
            &mut remote_pub
        };
        let payload = format!("{topic} at {qos:?}");
        let reason = publisher.publish(topic, payload.as_bytes(), qos, false);
        assert!(!reason.is_error(), "publish {topic}: {reason:?}");
    }
    // Each subscriber sees what was published on its own broker, and what the bridge carried
    // over: out/a one way, in/a the other, both/a and both/b each way. out/z and in/z go the
    // wrong way for their direction and stay where they were published.
    let local_expected = expected(
        &[
            ("local/out/a", "local/out/a"),
            ("local/in/a", "remote/in/a"),
            ("local/in/z", "local/in/z"),
            ("local/both/a", "local/both/a"),
            ("local/both/b", "remote/both/b"),
        ],
        qos,
    );
    let remote_expected = expected(
        &[
            ("remote/out/a", "local/out/a"),
            ("remote/out/z", "remote/out/z"),
            ("remote/in/a", "remote/in/a"),
            ("remote/both/a", "local/both/a"),
            ("remote/both/b", "remote/both/b"),
        ],
        qos,
    );
    let local_got = receive(&mut local_sub, local_expected.len());
    let remote_got = receive(&mut remote_sub, remote_expected.len());
    let at = |v: &[(String, Vec<u8>, QoS)]| {
        v.iter()
            .map(|(t, p, q)| {
                (
                    t.clone(),
                    String::from_utf8_lossy(p).replace(&format!(" at {qos:?}"), ""),
                    *q,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(at(&local_got), at(&local_expected), "on the local broker");
    assert_eq!(
        at(&remote_got),
        at(&remote_expected),
        "on the remote broker"
    );
    expect_quiet(&mut local_sub, "the local subscriber");
    expect_quiet(&mut remote_sub, "the remote subscriber");
}

// ------------------------------------------------------------------------------------------
// midge to midge
// ------------------------------------------------------------------------------------------

#[test]
fn midge_to_midge_over_tcp() {
    for version in [V311, V5] {
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let root = tempfile::tempdir().unwrap();
            let remote = midge(&subdir(root.path(), "remote"), "");
            let bridge = bridge_section("up", &remote.addr().to_string(), version, qos);
            let local = midge(&subdir(root.path(), "local"), &bridge);
            check_bridge(local.addr(), remote.addr(), qos);
        }
    }
}

#[test]
fn midge_to_midge_over_tls_with_a_client_certificate() {
    for version in [V311, V5] {
        let root = tempfile::tempdir().unwrap();
        let pki = Pki::new("bridge test CA");
        let remote_dir = subdir(root.path(), "remote");
        let remote = midge_with_tls(&remote_dir, &pki);
        let tls_addr = remote.listener("mqtt+tls").socket_addr();
        let local_dir = subdir(root.path(), "local");
        let bridge = format!(
            "{}{}",
            bridge_section("up", &tls_addr.to_string(), version, QoS::ExactlyOnce),
            bridge_tls_options(&local_dir, &pki)
        );
        let local = midge(&local_dir, &bridge);
        check_bridge(
            local.addr(),
            remote.listener("mqtt").socket_addr(),
            QoS::ExactlyOnce,
        );
    }
}

/// A remote whose certificate does not come from the bridge's CA is never connected to: the
/// bridge keeps failing (and says so), and nothing crosses.
#[test]
fn midge_refuses_a_remote_with_an_unknown_certificate() {
    let root = tempfile::tempdir().unwrap();
    let remote_dir = subdir(root.path(), "remote");
    let remote_pki = Pki::new("remote's CA");
    let remote = midge(
        &remote_dir,
        &format!(
            "listener 0 127.0.0.1\n{}",
            remote_pki.write_server_files(&remote_dir, false)
        ),
    );
    let local_dir = subdir(root.path(), "local");
    let other_pki = Pki::new("another CA");
    std::fs::write(local_dir.join("ca.pem"), other_pki.ca_pem()).unwrap();
    let tls_addr = remote.listener("mqtt+tls").socket_addr();
    let bridge = format!(
        "{}bridge_cafile {}\n",
        bridge_section("up", &tls_addr.to_string(), V5, QoS::AtLeastOnce),
        local_dir.join("ca.pem").display()
    );
    let local = midge(&local_dir, &bridge);
    let failed = local
        .log
        .wait_line(0, "bridge cannot connect", LINK_WAIT)
        .expect("the dial failure is logged");
    assert!(failed.contains("up"), "{failed}");
    let mut remote_sub = Client::connect(remote.addr(), V5, "remote-sub");
    remote_sub.sub("remote/#", QoS::AtLeastOnce);
    let mut local_pub = Client::connect(local.addr(), V5, "local-pub");
    local_pub.publish("local/out/x", b"must not cross", QoS::AtLeastOnce, false);
    expect_quiet(&mut remote_sub, "the remote subscriber");
}

// ------------------------------------------------------------------------------------------
// midge and Mosquitto
// ------------------------------------------------------------------------------------------

#[test]
fn midge_to_mosquitto_over_tcp() {
    if !mosquitto_available() {
        return;
    }
    for version in [V311, V5] {
        let qos = QoS::ExactlyOnce;
        let root = tempfile::tempdir().unwrap();
        let remote = Mosquitto::start(&subdir(root.path(), "remote"), None, "");
        let bridge = bridge_section("up", &remote.addr().to_string(), version, qos);
        let local = midge(&subdir(root.path(), "local"), &bridge);
        check_bridge(local.addr(), remote.addr(), qos);
    }
}

#[test]
fn midge_to_mosquitto_over_tls() {
    if !mosquitto_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::new("bridge test CA");
    let remote_dir = subdir(root.path(), "remote");
    let options = tls_listener_options(&remote_dir, &pki);
    let remote = Mosquitto::start(&remote_dir, Some(&options), "");
    let tls_port = remote.tls_port.expect("TLS listener");
    let local_dir = subdir(root.path(), "local");
    let bridge = format!(
        "{}{}",
        bridge_section(
            "up",
            &format!("127.0.0.1:{tls_port}"),
            V311,
            QoS::AtLeastOnce
        ),
        bridge_tls_options(&local_dir, &pki)
    );
    let local = midge(&local_dir, &bridge);
    check_bridge(local.addr(), remote.addr(), QoS::AtLeastOnce);
}

#[test]
fn mosquitto_to_midge_over_tcp() {
    if !mosquitto_available() {
        return;
    }
    for version in [V311, V5] {
        let qos = QoS::ExactlyOnce;
        let root = tempfile::tempdir().unwrap();
        let remote = midge(&subdir(root.path(), "remote"), "");
        let bridge = bridge_section("up", &remote.addr().to_string(), version, qos);
        let local = Mosquitto::start(&subdir(root.path(), "local"), None, &bridge);
        check_bridge(local.addr(), remote.addr(), qos);
    }
}

#[test]
fn mosquitto_to_midge_over_tls() {
    if !mosquitto_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::new("bridge test CA");
    let remote_dir = subdir(root.path(), "remote");
    let remote = midge_with_tls(&remote_dir, &pki);
    let tls_port = remote.listener("mqtt+tls").port();
    let local_dir = subdir(root.path(), "local");
    // The server certificate names localhost and 127.0.0.1; OpenSSL checks the name as a host
    // name, so Mosquitto dials localhost.
    let bridge = format!(
        "{}{}",
        bridge_section("up", &format!("localhost:{tls_port}"), V5, QoS::AtLeastOnce),
        bridge_tls_options(&local_dir, &pki)
    );
    let local = Mosquitto::start(&local_dir, None, &bridge);
    check_bridge(
        local.addr(),
        remote.listener("mqtt").socket_addr(),
        QoS::AtLeastOnce,
    );
}

// ------------------------------------------------------------------------------------------
// The remote broker restarts
// ------------------------------------------------------------------------------------------

/// A remote broker that can be stopped and started again on the same port, with its
/// persistence.
trait Restartable {
    fn addr(&self) -> SocketAddr;
    fn stop(&mut self);
    fn start(&mut self);
}

struct RestartableMidge {
    dir: PathBuf,
    port: u16,
    extra: String,
    daemon: Option<Daemon>,
}

impl Restartable for RestartableMidge {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            assert!(d.terminate().success(), "midge did not stop cleanly");
        }
    }

    fn start(&mut self) {
        self.daemon = Some(midge_on(&self.dir, self.port, &self.extra));
    }
}

impl Restartable for Mosquitto {
    fn addr(&self) -> SocketAddr {
        Mosquitto::addr(self)
    }

    fn stop(&mut self) {
        Mosquitto::stop(self);
    }

    fn start(&mut self) {
        self.start_again();
    }
}

/// A persistent 3.1.1 session on `addr` (clean session off), subscribed to `filter`.
fn keeper(addr: SocketAddr, id: &str, filter: Option<(&str, QoS)>) -> Client {
    let mut options = ConnectOptions::new(V311, id);
    options.connect.clean_start = false;
    let mut client = Client::connect_with(tcp(addr), options);
    if let Some((filter, qos)) = filter {
        client.sub(filter, qos);
    }
    client
}

/// The remote broker goes down and comes back with its persistence: QoS 1 and 2 messages
/// published on the local broker while it is down cross once the bridge reconnects (the
/// bridge's local session kept them), and messages published on the remote broker before the
/// bridge is back reach the local broker (the remote kept the bridge's session and its
/// subscription).
fn check_restart(remote: &mut dyn Restartable, local: SocketAddr) {
    let mut local_sub = keeper(local, "local-keeper", Some(("local/#", QoS::ExactlyOnce)));
    let mut remote_sub = keeper(
        remote.addr(),
        "remote-keeper",
        Some(("remote/#", QoS::ExactlyOnce)),
    );
    let mut local_pub = Client::connect(local, V5, "local-pub");
    let mut remote_pub = Client::connect(remote.addr(), V5, "remote-pub");
    await_link(
        &mut local_pub,
        "local/out/probe",
        &mut remote_sub,
        "remote/out/probe",
    );
    await_link(
        &mut remote_pub,
        "remote/in/probe",
        &mut local_sub,
        "local/in/probe",
    );
    drop(remote_pub);
    drop(remote_sub);

    remote.stop();
    // Published locally while the remote is down.
    for (i, qos) in [QoS::AtLeastOnce, QoS::ExactlyOnce].into_iter().enumerate() {
        let reason =
            local_pub.publish("local/out/kept", format!("kept {i}").as_bytes(), qos, false);
        assert!(!reason.is_error(), "{reason:?}");
    }
    remote.start();
    // Published on the remote as soon as it is back, whether the bridge is or not.
    let mut remote_pub = Client::connect(remote.addr(), V5, "remote-pub");
    for (i, qos) in [QoS::AtLeastOnce, QoS::ExactlyOnce].into_iter().enumerate() {
        let reason =
            remote_pub.publish("remote/in/kept", format!("kept {i}").as_bytes(), qos, false);
        assert!(!reason.is_error(), "{reason:?}");
    }
    let mut remote_sub = keeper(remote.addr(), "remote-keeper", None);
    let payloads = |got: Vec<(String, Vec<u8>, QoS)>, topic: &str| {
        got.into_iter()
            .filter(|(t, _, _)| t == topic)
            .map(|(_, p, _)| String::from_utf8(p).unwrap())
            .collect::<Vec<_>>()
    };
    // The remote subscriber also sees its own broker's remote/in/kept.
    let got = receive(&mut remote_sub, 4);
    assert_eq!(payloads(got, "remote/out/kept"), ["kept 0", "kept 1"]);
    // The local subscriber also sees local/out/kept directly.
    let got = receive(&mut local_sub, 4);
    assert_eq!(payloads(got, "local/in/kept"), ["kept 0", "kept 1"]);
    expect_quiet(&mut remote_sub, "the remote subscriber");
    expect_quiet(&mut local_sub, "the local subscriber");
}

#[test]
fn messages_cross_after_a_midge_remote_restarts() {
    let root = tempfile::tempdir().unwrap();
    let remote_dir = subdir(root.path(), "remote");
    let data = subdir(&remote_dir, "data");
    let mut remote = RestartableMidge {
        dir: remote_dir,
        port: free_port(),
        extra: format!(
            "persistence true\npersistence_location {}/\n",
            data.display()
        ),
        daemon: None,
    };
    remote.start();
    let bridge = bridge_section("up", &remote.addr().to_string(), V5, QoS::ExactlyOnce);
    let local = midge(&subdir(root.path(), "local"), &bridge);
    check_restart(&mut remote, local.addr());
}

#[test]
fn messages_cross_after_a_mosquitto_remote_restarts() {
    if !mosquitto_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let remote_dir = subdir(root.path(), "remote");
    let data = subdir(&remote_dir, "data");
    let mut remote = Mosquitto::start(
        &remote_dir,
        None,
        &format!(
            "persistence true\npersistence_location {}/\n",
            data.display()
        ),
    );
    let bridge = bridge_section("up", &remote.addr().to_string(), V311, QoS::ExactlyOnce);
    let local = midge(&subdir(root.path(), "local"), &bridge);
    check_restart(&mut remote, local.addr());
}

// ------------------------------------------------------------------------------------------
// Notifications
// ------------------------------------------------------------------------------------------

/// Waits for a retained or live message on `topic` with `payload`.
fn expect_state(client: &mut Client, topic: &str, payload: &[u8]) {
    let deadline = Instant::now() + LINK_WAIT;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("{topic} never said {payload:?}"));
        match client.try_recv_publish(left) {
            Ok(p) if &*p.topic == topic && p.payload[..] == *payload => return,
            Ok(_) => {}
            Err(e) => panic!("waiting for {topic} = {payload:?}: {e:?}"),
        }
    }
}

/// `notifications` (on by default): "1" on the notification topic, retained, locally and on
/// the remote broker once the bridge is up; "0" locally when the remote goes away, and "0" on
/// the remote (the bridge's will) when the local broker goes away.
#[test]
fn notifications_say_whether_the_bridge_is_up() {
    let root = tempfile::tempdir().unwrap();
    let remote_dir = subdir(root.path(), "remote");
    let mut remote = RestartableMidge {
        dir: remote_dir,
        port: free_port(),
        extra: String::new(),
        daemon: None,
    };
    remote.start();
    let bridge = bridge_section("up", &remote.addr().to_string(), V311, QoS::AtLeastOnce);
    let local = midge(&subdir(root.path(), "local"), &bridge);
    let topic = notification_topic("up");

    let mut local_watch = Client::connect(local.addr(), V5, "local-watch");
    local_watch.sub(&topic, QoS::AtLeastOnce);
    expect_state(&mut local_watch, &topic, b"1");
    let mut remote_watch = Client::connect(remote.addr(), V5, "remote-watch");
    remote_watch.sub(&topic, QoS::AtLeastOnce);
    expect_state(&mut remote_watch, &topic, b"1");
    // A late subscriber gets the state retained.
    let mut late = Client::connect(local.addr(), V5, "late-watch");
    late.sub(&topic, QoS::AtLeastOnce);
    let state = late.recv_publish();
    assert_eq!(
        (&*state.topic, &state.payload[..], state.retain),
        (topic.as_str(), &b"1"[..], true)
    );

    // The remote restarts: the local state goes to "0", then back to "1".
    remote.stop();
    expect_state(&mut local_watch, &topic, b"0");
    remote.start();
    expect_state(&mut local_watch, &topic, b"1");

    // The local broker dies: the remote hears "0" from the bridge's will.
    let mut remote_watch = Client::connect(remote.addr(), V5, "remote-watch-2");
    remote_watch.sub(&topic, QoS::AtLeastOnce);
    expect_state(&mut remote_watch, &topic, b"1");
    send_signal(local.pid(), "KILL");
    expect_state(&mut remote_watch, &topic, b"0");
}
