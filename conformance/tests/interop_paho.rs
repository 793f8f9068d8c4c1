//! Interoperability with Python paho-mqtt (2.x, and 1.x: the script takes both callback APIs):
//! MQTT 3.1.1 and 5.0, over TCP, TLS, WebSocket and WebSocket over TLS (path `/mqtt`; TLS
//! trusting the test CA and checking the server's name), each of the four scenarios: every QoS,
//! retained messages, wills, persistent session resume.
//!
//! `interop/paho_scenarios.py` acts out a scenario and prints a line for each CONNACK, SUBACK and
//! message its clients receive; the tests here compare those lines with exactly what the broker
//! must produce, so a missing, extra, duplicated or altered packet fails them. Each test starts a
//! daemon of its own. Without Python's paho-mqtt the tests are skipped with a notice (under CI,
//! which installs it, they fail instead).

use midge_conformance::interop::{InteropBroker, Transport, run_with_timeout, tool_available};
use midge_conformance::names::Names;
use std::process::Command;
use std::time::Duration;

/// The script that acts out the scenarios.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/paho_scenarios.py");

/// How long one scenario may take: each of its steps has a 10 s deadline in the script.
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
enum Version {
    V311,
    V5,
}

impl Version {
    /// The protocol level paho_scenarios.py takes.
    fn level(self) -> &'static str {
        match self {
            Version::V311 => "4",
            Version::V5 => "5",
        }
    }
}

fn paho_available() -> bool {
    tool_available(
        "Python paho-mqtt",
        Command::new("python3").args(["-c", "import paho.mqtt.client"]),
    )
}

/// A daemon of its own for one test, the names its clients and topics take, and the protocol
/// version and transport the script uses.
struct Run {
    broker: InteropBroker,
    names: Names,
    version: Version,
    transport: Transport,
}

impl Run {
    fn new(version: Version, transport: Transport) -> Run {
        Run {
            broker: InteropBroker::start(env!("CARGO_BIN_EXE_midge-under-test")),
            names: Names::new(),
            version,
            transport,
        }
    }

    fn topic(&self, suffix: &str) -> String {
        self.names.topic(suffix)
    }

    /// Runs `scenario` and returns the lines it printed; fails if the script fails.
    fn scenario(&self, scenario: &str) -> Vec<String> {
        let port = self.broker.port(self.transport).to_string();
        let out = run_with_timeout(
            Command::new("python3")
                .arg(SCRIPT)
                .arg(scenario)
                .args(["--port", &port])
                .args(["--transport", self.transport.name()])
                .args(["--version", self.version.level()])
                .arg("--ca-file")
                .arg(self.broker.ca_file())
                .args(["--id-prefix", &self.names.client_id("")])
                .args(["--root", &self.names.root()]),
            SCENARIO_LIMIT,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "paho scenario {scenario} ({self:?}) failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout.lines().map(str::to_owned).collect()
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} over {}", self.version, self.transport.name())
    }
}

fn lines(expected: &[String]) -> Vec<String> {
    let mut all = expected.to_vec();
    all.push("DONE".to_owned());
    all
}

/// A subscriber at QoS 2 gets the messages published at QoS 0, 1 and 2, each at its own QoS
/// and in order.
fn every_qos(version: Version, transport: Transport) {
    if !paho_available() {
        return;
    }
    let run = Run::new(version, transport);
    let mut expected = vec![
        "CONNACK sub session_present=0 code=0".to_owned(),
        "SUBACK sub 2".to_owned(),
        "CONNACK pub session_present=0 code=0".to_owned(),
    ];
    for qos in 0..3 {
        let topic = run.topic(&format!("qos/{qos}"));
        expected.push(format!("MSG sub {topic} qos={qos} retain=0 at qos {qos}"));
    }
    assert_eq!(run.scenario("qos"), lines(&expected), "{run:?}");
}

/// A message published retained reaches a later subscriber with the retain flag set.
fn retained(version: Version, transport: Transport) {
    if !paho_available() {
        return;
    }
    let run = Run::new(version, transport);
    let topic = run.topic("retained");
    let expected = [
        "CONNACK pub session_present=0 code=0".to_owned(),
        "CONNACK late session_present=0 code=0".to_owned(),
        "SUBACK late 1".to_owned(),
        format!("MSG late {topic} qos=1 retain=1 kept"),
    ];
    assert_eq!(run.scenario("retained"), lines(&expected), "{run:?}");
}

/// The will of a client whose connection closes without DISCONNECT reaches a subscriber.
fn will(version: Version, transport: Transport) {
    if !paho_available() {
        return;
    }
    let run = Run::new(version, transport);
    let topic = run.topic("will");
    let expected = [
        "CONNACK sub session_present=0 code=0".to_owned(),
        "SUBACK sub 1".to_owned(),
        "CONNACK gone session_present=0 code=0".to_owned(),
        format!("MSG sub {topic} qos=1 retain=0 gone"),
    ];
    assert_eq!(run.scenario("will"), lines(&expected), "{run:?}");
}

/// A persistent session (3.1.1 clean session 0; 5.0 clean start 0 with a Session Expiry
/// Interval) is resumed with Session Present 1, and the QoS 1 and 2 messages published while
/// its client was away arrive once each, at their QoS.
fn session_resume(version: Version, transport: Transport) {
    if !paho_available() {
        return;
    }
    let run = Run::new(version, transport);
    let expected = [
        "CONNACK away session_present=0 code=0".to_owned(),
        "SUBACK away 2".to_owned(),
        "CONNACK pub session_present=0 code=0".to_owned(),
        "CONNACK away session_present=1 code=0".to_owned(),
        format!(
            "MSG away {} qos=1 retain=0 queued at qos 1",
            run.topic("session/1")
        ),
        format!(
            "MSG away {} qos=2 retain=0 queued at qos 2",
            run.topic("session/2")
        ),
    ];
    assert_eq!(run.scenario("session"), lines(&expected), "{run:?}");
}

midge_conformance::interop_scenarios! {
    v311_tcp: Version::V311, Transport::Tcp;
    v311_tls: Version::V311, Transport::Tls;
    v311_ws: Version::V311, Transport::Ws;
    v311_wss: Version::V311, Transport::Wss;
    v5_tcp: Version::V5, Transport::Tcp;
    v5_tls: Version::V5, Transport::Tls;
    v5_ws: Version::V5, Transport::Ws;
    v5_wss: Version::V5, Transport::Wss;
}
