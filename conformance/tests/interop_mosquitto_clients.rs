//! Interoperability with Mosquitto's command line clients, mosquitto_pub and mosquitto_sub
//! (Debian package mosquitto-clients, 2.0.x): MQTT 3.1.1 (`-V mqttv311`) and 5.0 (`-V mqttv5`),
//! over TCP and over TLS (`--cafile` with the test CA), each of the four scenarios: every QoS,
//! retained messages, wills, persistent session resume. Then two MQTT 5 features these clients
//! expose: a publisher's topic alias and shared subscriptions.
//!
//! These clients have no WebSocket transport (libmosquitto 2.0 has no WebSocket client), so the
//! WebSocket listeners are left to the other interoperability tests.
//!
//! mosquitto_sub prints each message as `MSG|topic|qos|retain|payload` (`-F`) and, with `-d`,
//! its packets; the tests compare the messages with exactly what the broker must deliver. Each
//! test starts a daemon of its own. Without the clients the tests are skipped with a notice
//! (under CI, which installs them, they fail instead).

use midge_conformance::interop::{InteropBroker, Transport, run_with_timeout, tool_available};
use midge_conformance::names::Names;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a client may take to connect, subscribe, publish or receive what it waits for.
const TOOL_WAIT: Duration = Duration::from_secs(30);

/// mosquitto_sub's own timeout (`-W`, seconds): it gives up before the test's deadline does.
const SUB_TIMEOUT: &str = "20";

/// How a message is printed: topic, QoS, retain flag, payload.
const FORMAT: &str = "MSG|%t|%q|%r|%p";

/// How long a persistent session outlives its connection (MQTT 5, `-x`), in seconds.
const SESSION_EXPIRY: &str = "300";

#[derive(Debug, Clone, Copy)]
enum Version {
    V311,
    V5,
}

impl Version {
    /// The `-V` argument.
    fn arg(self) -> &'static str {
        match self {
            Version::V311 => "mqttv311",
            Version::V5 => "mqttv5",
        }
    }
}

fn mosquitto_clients_available() -> bool {
    tool_available(
        "mosquitto_pub and mosquitto_sub (Debian package mosquitto-clients)",
        Command::new("sh").args(["-c", "command -v mosquitto_pub && command -v mosquitto_sub"]),
    )
}

/// A daemon of its own for one test and the names its clients and topics take.
struct Setup {
    broker: InteropBroker,
    names: Names,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            broker: InteropBroker::start(env!("CARGO_BIN_EXE_midge-under-test")),
            names: Names::new(),
        }
    }

    fn topic(&self, suffix: &str) -> String {
        self.names.topic(suffix)
    }

    /// Clients of `version` that reach the broker over `transport`.
    fn clients(&self, version: Version, transport: Transport) -> Clients<'_> {
        Clients {
            broker: &self.broker,
            version,
            transport,
        }
    }
}

/// How mosquitto_pub and mosquitto_sub reach the broker: protocol version and transport.
struct Clients<'a> {
    broker: &'a InteropBroker,
    version: Version,
    transport: Transport,
}

impl Clients<'_> {
    /// The arguments that connect a client: host, port, protocol version and, over TLS, the CA.
    fn connection(&self) -> Vec<String> {
        let mut args = strings(&[
            "-h",
            "127.0.0.1",
            "-p",
            &self.broker.port(self.transport).to_string(),
            "-V",
            self.version.arg(),
        ]);
        if self.transport == Transport::Tls {
            args.push("--cafile".to_owned());
            args.push(self.broker.ca_file().display().to_string());
        }
        args
    }

    /// The arguments of a persistent session with client id `id`: clean session 0 (3.1.1) or
    /// clean start 0 with a Session Expiry Interval (5.0).
    fn persistent(&self, id: &str) -> Vec<String> {
        let mut args = strings(&["-c", "-i", id]);
        if let Version::V5 = self.version {
            args.extend(strings(&["-x", SESSION_EXPIRY]));
        }
        args
    }

    /// Runs mosquitto_pub with `extra` arguments to completion; it must succeed.
    fn publish(&self, extra: &[&str]) {
        let mut args = self.connection();
        args.extend(strings(extra));
        let out = run_with_timeout(Command::new("mosquitto_pub").args(&args), TOOL_WAIT);
        assert!(
            out.status.success(),
            "mosquitto_pub {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// mosquitto_sub subscribed to `filter` at `qos` (its SUBACK received and checked), exiting
    /// after `count` messages; `extra` arguments go before the subscription's.
    fn subscribe(&self, extra: &[String], filter: &str, qos: u8, count: usize) -> Tool {
        let mut args = self.connection();
        args.extend(extra.iter().cloned());
        let qos = qos.to_string();
        args.extend(strings(&[
            "-t",
            filter,
            "-q",
            &qos,
            "-C",
            &count.to_string(),
            "-W",
            SUB_TIMEOUT,
            "-d",
            "-F",
            FORMAT,
        ]));
        let mut tool = Tool::spawn("mosquitto_sub", &args);
        tool.wait_line(&format!("Subscribed (mid: 1): {qos}"));
        tool
    }

    /// [`Clients::subscribe`] with no other arguments.
    fn sub(&self, filter: &str, qos: u8, count: usize) -> Tool {
        self.subscribe(&[], filter, qos, count)
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn message(topic: &str, qos: u8, retain: bool, payload: &str) -> String {
    format!("MSG|{topic}|{qos}|{}|{payload}", u8::from(retain))
}

/// A client process with its standard output read line by line; killed when dropped.
struct Tool {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Tool {
    fn spawn(program: &str, args: &[String]) -> Tool {
        // Output to a pipe is block-buffered; stdbuf (coreutils) makes it line-buffered so
        // each line is seen when it is printed.
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Tool {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line of output containing `needle`.
    fn wait_line(&mut self, needle: &str) {
        let deadline = Instant::now() + TOOL_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!("no '{needle}' in output: {:?}", self.seen),
            }
        }
    }

    /// Waits for the process to exit successfully and returns the messages it printed.
    fn messages(mut self) -> Vec<String> {
        let deadline = Instant::now() + TOOL_WAIT;
        // The reader's channel closes when the process has exited and its output is read.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the client did not finish: {:?}", self.seen)
                }
            }
        }
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "the client did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "exit status {status}: {:?}", self.seen);
        self.seen
            .iter()
            .filter(|l| l.starts_with("MSG|"))
            .cloned()
            .collect()
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto_pub publishes at QoS 0, 1 and 2 to a mosquitto_sub subscribed at QoS 2: each
/// message arrives at its QoS, in order.
fn every_qos(version: Version, transport: Transport) {
    if !mosquitto_clients_available() {
        return;
    }
    let setup = Setup::new();
    let clients = setup.clients(version, transport);
    let sub = clients.sub(&setup.topic("qos/#"), 2, 3);
    let sent: Vec<(u8, String, String)> = (0..3)
        .map(|qos| {
            (
                qos,
                setup.topic(&format!("qos/{qos}")),
                format!("at qos {qos}"),
            )
        })
        .collect();
    for (qos, topic, payload) in &sent {
        clients.publish(&["-t", topic, "-q", &qos.to_string(), "-m", payload]);
    }
    let expected: Vec<String> = sent
        .iter()
        .map(|(qos, topic, payload)| message(topic, *qos, false, payload))
        .collect();
    assert_eq!(sub.messages(), expected, "{version:?} over {transport:?}");
}

/// A message mosquitto_pub retains (`-r`) reaches a later mosquitto_sub with the retain flag.
fn retained(version: Version, transport: Transport) {
    if !mosquitto_clients_available() {
        return;
    }
    let setup = Setup::new();
    let clients = setup.clients(version, transport);
    let topic = setup.topic("retained");
    clients.publish(&["-t", &topic, "-q", "1", "-r", "-m", "kept"]);
    let sub = clients.sub(&topic, 1, 1);
    assert_eq!(
        sub.messages(),
        [message(&topic, 1, true, "kept")],
        "{version:?} over {transport:?}"
    );
}

/// The will of a mosquitto_pub that is killed (its socket closed by the kernel, no DISCONNECT)
/// reaches mosquitto_sub; being a retained will, it is kept for a later subscriber too.
fn will(version: Version, transport: Transport) {
    if !mosquitto_clients_available() {
        return;
    }
    let setup = Setup::new();
    let clients = setup.clients(version, transport);
    let topic = setup.topic("will");
    let sub = clients.sub(&topic, 1, 1);
    let mut args = clients.connection();
    // -l: publish lines from standard input, so the client stays connected until killed.
    args.extend(strings(&[
        "-d",
        "-l",
        "-t",
        &setup.topic("lines"),
        "--will-topic",
        &topic,
        "--will-payload",
        "gone",
        "--will-qos",
        "1",
        "--will-retain",
    ]));
    let mut gone = Tool::spawn("mosquitto_pub", &args);
    gone.wait_line("received CONNACK (0)");
    drop(gone); // SIGKILL
    assert_eq!(
        sub.messages(),
        [message(&topic, 1, false, "gone")],
        "{version:?} over {transport:?}"
    );
    let later = clients.sub(&topic, 1, 1);
    assert_eq!(
        later.messages(),
        [message(&topic, 1, true, "gone")],
        "{version:?} over {transport:?}"
    );
}

/// A mosquitto_sub with a persistent session (`-c -i ID`, and `-x` in MQTT 5) subscribes at
/// QoS 2 and exits; the QoS 1 and 2 messages published while it is away are delivered once each
/// when it comes back with the same client id.
///
/// mosquitto_sub does not print the CONNACK's Session Present flag, so the session shows itself
/// otherwise: on its return the client subscribes to an unrelated filter, and what it receives
/// can only come from the subscription its session kept. A message published after its return
/// ends the run: a queued message delivered twice would take its place.
fn session_resume(version: Version, transport: Transport) {
    if !mosquitto_clients_available() {
        return;
    }
    let setup = Setup::new();
    let clients = setup.clients(version, transport);
    let id = setup.names.client_id("away");
    let filter = setup.topic("session/#");
    let mut args = clients.connection();
    args.extend(clients.persistent(&id));
    // -E: exit (with DISCONNECT) once the subscription is acknowledged.
    args.extend(strings(&["-t", &filter, "-q", "2", "-E", "-d"]));
    let out = run_with_timeout(Command::new("mosquitto_sub").args(&args), TOOL_WAIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Subscribed (mid: 1): 2"),
        "mosquitto_sub {args:?} ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let (first, second, last) = (
        setup.topic("session/1"),
        setup.topic("session/2"),
        setup.topic("session/3"),
    );
    clients.publish(&["-t", &first, "-q", "1", "-m", "queued at qos 1"]);
    clients.publish(&["-t", &second, "-q", "2", "-m", "queued at qos 2"]);
    let back = clients.subscribe(&clients.persistent(&id), &setup.topic("unrelated"), 2, 3);
    clients.publish(&["-t", &last, "-q", "2", "-m", "after the return"]);
    assert_eq!(
        back.messages(),
        [
            message(&first, 1, false, "queued at qos 1"),
            message(&second, 2, false, "queued at qos 2"),
            message(&last, 2, false, "after the return"),
        ],
        "{version:?} over {transport:?}"
    );
}

midge_conformance::interop_scenarios! {
    v311_tcp: Version::V311, Transport::Tcp;
    v311_tls: Version::V311, Transport::Tls;
    v5_tcp: Version::V5, Transport::Tcp;
    v5_tls: Version::V5, Transport::Tls;
}

/// mosquitto_pub's topic alias (`-D publish topic-alias`) is accepted and resolved by the
/// broker: both messages, the second sent with the alias alone, reach the subscriber under the
/// topic name. (The broker's own aliases go only to clients that announce a Topic Alias Maximum;
/// libmosquitto 2.0 cannot resolve them, so mosquitto_sub must not ask.)
#[test]
fn v5_topic_alias_from_publisher() {
    if !mosquitto_clients_available() {
        return;
    }
    let setup = Setup::new();
    let clients = setup.clients(Version::V5, Transport::Tcp);
    let topic = setup.topic("alias");
    let sub = clients.sub(&topic, 1, 2);
    for payload in ["1", "2"] {
        clients.publish(&[
            "-t",
            &topic,
            "-q",
            "1",
            "-m",
            payload,
            "-D",
            "publish",
            "topic-alias",
            "1",
        ]);
    }
    assert_eq!(
        sub.messages(),
        [
            message(&topic, 1, false, "1"),
            message(&topic, 1, false, "2")
        ]
    );
}

/// Two mosquitto_sub clients in one shared subscription group, one in MQTT 5 and one in 3.1.1
/// (the broker honours `$share/` filters from 3.1.1 clients too, as Mosquitto does): each
/// message goes to exactly one of them, and they take turns, two messages each.
#[test]
fn v5_shared_subscription() {
    if !mosquitto_clients_available() {
        return;
    }
    let setup = Setup::new();
    let v5 = setup.clients(Version::V5, Transport::Tcp);
    let v311 = setup.clients(Version::V311, Transport::Tcp);
    let topic = setup.topic("shared");
    let filter = format!("$share/group/{topic}");
    let a = v5.sub(&filter, 1, 2);
    let b = v311.sub(&filter, 1, 2);
    for n in 0..4 {
        v5.publish(&["-t", &topic, "-q", "1", "-m", &n.to_string()]);
    }
    let mut got = a.messages();
    got.extend(b.messages());
    got.sort();
    let expected: Vec<String> = (0..4)
        .map(|n| message(&topic, 1, false, &n.to_string()))
        .collect();
    assert_eq!(got, expected);
}
