//! Interoperability with independent MQTT clients: Mosquitto's command line clients
//! (mosquitto_pub, mosquitto_sub; Debian package mosquitto-clients) and Python's paho-mqtt.
//! Each test is skipped with a notice where its tool is missing, except under CI, which
//! installs them (.ci/run) and where a missing tool is a failure.

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const PLAIN: &str = "listener 0 127.0.0.1\nallow_anonymous true\n";
const TOOL_WAIT: Duration = Duration::from_secs(30);

fn mosquitto_available() -> bool {
    tool_available(
        "mosquitto_pub and mosquitto_sub (Debian package mosquitto-clients)",
        Command::new("sh").args(["-c", "command -v mosquitto_pub && command -v mosquitto_sub"]),
    )
}

/// A client process with its standard output read line by line; killed when dropped.
struct Tool {
    child: Child,
    stdout: Arc<Lines>,
    _stderr: Arc<Lines>,
}

impl Tool {
    fn spawn(program: &str, args: &[String], label: &'static str) -> Tool {
        // Output to a pipe is block-buffered; stdbuf (coreutils) makes it line-buffered so
        // each line is seen when it is printed.
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let stdout = Lines::collect(child.stdout.take().unwrap(), label);
        let stderr = Lines::collect(child.stderr.take().unwrap(), label);
        Tool {
            child,
            stdout,
            _stderr: stderr,
        }
    }

    /// Waits for a line of output containing `needle`.
    fn wait_line(&self, needle: &str) -> String {
        self.stdout
            .wait_line(0, needle, TOOL_WAIT)
            .unwrap_or_else(|| panic!("no '{needle}' in output: {:?}", self.stdout.snapshot()))
    }

    /// Waits for the process to exit successfully and returns its `MSG|` lines.
    fn messages(mut self) -> Vec<String> {
        let status = wait_exit(&mut self.child, TOOL_WAIT).expect("the tool to finish");
        assert!(
            status.success(),
            "exit status {status}: {:?}",
            self.stdout.snapshot()
        );
        // The pipe closes when the process exits; wait for the reader to see it all.
        self.stdout.wait_for(TOOL_WAIT, |_| false);
        self.stdout
            .snapshot()
            .into_iter()
            .filter(|l| l.starts_with("MSG|"))
            .collect()
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// mosquitto_sub subscribed to `topic` (its SUBACK seen), exiting after `count` messages.
fn mosquitto_sub(port: u16, version: &str, topic: &str, qos: u8, count: usize) -> Tool {
    let port = port.to_string();
    let qos = qos.to_string();
    let count = count.to_string();
    let tool = Tool::spawn(
        "mosquitto_sub",
        &args(&[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            version,
            "-t",
            topic,
            "-q",
            &qos,
            "-C",
            &count,
            "-W",
            "30",
            "-d",
            "-F",
            "MSG|%t|%q|%r|%p",
        ]),
        "mosquitto_sub",
    );
    tool.wait_line("Subscribed (mid");
    tool
}

fn mosquitto_pub(port: u16, version: &str, extra: &[&str]) {
    let port = port.to_string();
    let mut a = args(&["-h", "127.0.0.1", "-p", &port, "-V", version]);
    a.extend(args(extra));
    let out = run_with_timeout(Command::new("mosquitto_pub").args(&a), TOOL_WAIT);
    assert!(
        out.status.success(),
        "mosquitto_pub {a:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// mosquitto_pub to mosquitto_sub through the daemon at QoS 0, 1 and 2, in MQTT 3.1.1 and 5.0;
/// each message arrives at its QoS.
#[test]
fn mosquitto_clients_every_qos() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), PLAIN);
    let port = daemon.addr().port();
    for version in ["mqttv311", "mqttv5"] {
        let sub = mosquitto_sub(port, version, "interop/qos/#", 2, 3);
        for qos in ["0", "1", "2"] {
            let topic = format!("interop/qos/{qos}");
            let message = format!("{version} at qos {qos}");
            mosquitto_pub(port, version, &["-t", &topic, "-q", qos, "-m", &message]);
        }
        assert_eq!(
            sub.messages(),
            (0..3)
                .map(|q| format!("MSG|interop/qos/{q}|{q}|0|{version} at qos {q}"))
                .collect::<Vec<_>>()
        );
    }
}

/// mosquitto_pub's topic alias (`-D publish topic-alias`) is accepted and resolved by the
/// broker. (The broker's own aliases go only to clients that announce a Topic Alias Maximum;
/// libmosquitto 2.0's client library cannot resolve them, so mosquitto_sub must not ask.)
#[test]
fn mosquitto_clients_topic_alias() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), PLAIN);
    let port = daemon.addr().port();
    let sub = mosquitto_sub(port, "mqttv5", "alias/#", 1, 2);
    for message in ["1", "2"] {
        mosquitto_pub(
            port,
            "mqttv5",
            &[
                "-t",
                "alias/a",
                "-q",
                "1",
                "-m",
                message,
                "-D",
                "publish",
                "topic-alias",
                "1",
            ],
        );
    }
    assert_eq!(sub.messages(), ["MSG|alias/a|1|0|1", "MSG|alias/a|1|0|2"]);
}

/// Two mosquitto_sub clients in one shared subscription group, MQTT 5 and 3.1.1: each message
/// goes to one of them, and they take turns.
#[test]
fn mosquitto_clients_shared_subscription() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), PLAIN);
    let port = daemon.addr().port();
    let a = mosquitto_sub(port, "mqttv5", "$share/g/shared/t", 1, 2);
    let b = mosquitto_sub(port, "mqttv311", "$share/g/shared/t", 1, 2);
    for n in 0..4 {
        mosquitto_pub(
            port,
            "mqttv5",
            &["-t", "shared/t", "-q", "1", "-m", &n.to_string()],
        );
    }
    let mut got = a.messages();
    got.extend(b.messages());
    got.sort();
    assert_eq!(
        got,
        (0..4)
            .map(|n| format!("MSG|shared/t|1|0|{n}"))
            .collect::<Vec<_>>()
    );
}

/// A message mosquitto_pub retains (-r) is delivered, retained, to a later mosquitto_sub.
#[test]
fn mosquitto_clients_retained() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), PLAIN);
    let port = daemon.addr().port();
    for version in ["mqttv311", "mqttv5"] {
        let topic = format!("interop/retained/{version}");
        mosquitto_pub(
            port,
            version,
            &["-t", &topic, "-q", "1", "-r", "-m", "kept"],
        );
        let sub = mosquitto_sub(port, version, &topic, 1, 1);
        assert_eq!(sub.messages(), [format!("MSG|{topic}|1|1|kept")]);
    }
}

/// The will of a mosquitto_pub that is killed (its socket closed without DISCONNECT) reaches
/// mosquitto_sub; with --will-retain it is also kept for later subscribers.
#[test]
fn mosquitto_clients_will() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), PLAIN);
    let port = daemon.addr().port();
    for version in ["mqttv311", "mqttv5"] {
        let will_topic = format!("interop/will/{version}");
        let sub = mosquitto_sub(port, version, &will_topic, 1, 1);
        let port_arg = port.to_string();
        // -l: publish lines from standard input, so the client stays connected until killed.
        let willer = Tool::spawn(
            "mosquitto_pub",
            &args(&[
                "-h",
                "127.0.0.1",
                "-p",
                &port_arg,
                "-V",
                version,
                "-d",
                "-l",
                "-t",
                "interop/lines",
                "--will-topic",
                &will_topic,
                "--will-payload",
                "gone",
                "--will-qos",
                "1",
                "--will-retain",
            ]),
            "mosquitto_pub",
        );
        willer.wait_line("received CONNACK");
        drop(willer); // SIGKILL: the kernel closes the socket, no DISCONNECT.
        assert_eq!(sub.messages(), [format!("MSG|{will_topic}|1|0|gone")]);
        let later = mosquitto_sub(port, version, &will_topic, 1, 1);
        assert_eq!(later.messages(), [format!("MSG|{will_topic}|1|1|gone")]);
    }
}

const PAHO_SCRIPT: &str = r#"
import queue
import sys
import threading

import paho.mqtt.client as mqtt

HOST, PORT, VERSION = sys.argv[1], int(sys.argv[2]), sys.argv[3]
PROTOCOL = mqtt.MQTTv5 if VERSION == "5" else mqtt.MQTTv311
TIMEOUT = 10


def fail(what):
    print("FAIL", what, flush=True)
    sys.exit(1)


def client(client_id):
    kwargs = {"client_id": client_id, "protocol": PROTOCOL}
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2
        kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
    c = mqtt.Client(**kwargs)
    c.name = client_id
    c.connected = threading.Event()
    c.subscribed = threading.Event()
    c.messages = queue.Queue()
    c.on_connect = lambda c, *args: c.connected.set()
    c.on_subscribe = lambda c, *args: c.subscribed.set()
    c.on_message = lambda c, userdata, msg: c.messages.put(msg)
    return c


def connect(c):
    c.connect(HOST, PORT, keepalive=30)
    c.loop_start()
    if not c.connected.wait(TIMEOUT) or not c.is_connected():
        fail("connect " + c.name)


def subscribe(c, topic, qos):
    c.subscribed.clear()
    c.subscribe(topic, qos)
    if not c.subscribed.wait(TIMEOUT):
        fail("subscribe " + topic)


def publish(c, topic, payload, qos, retain=False):
    info = c.publish(topic, payload, qos=qos, retain=retain)
    info.wait_for_publish(TIMEOUT)
    if not info.is_published():
        fail("publish " + topic)


def report(c, what):
    try:
        m = c.messages.get(timeout=TIMEOUT)
    except queue.Empty:
        fail("no message for " + what)
    print("MSG", what, m.topic, m.qos, int(m.retain), m.payload.decode(), flush=True)


sub = client("paho-sub")
connect(sub)
subscribe(sub, "paho/qos/#", 2)
pub = client("paho-pub")
connect(pub)
for qos in (0, 1, 2):
    publish(pub, "paho/qos/%d" % qos, "hello at qos %d" % qos, qos)
    report(sub, "qos%d" % qos)

publish(pub, "paho/retained", "kept", 1, retain=True)
late = client("paho-late")
connect(late)
subscribe(late, "paho/retained", 1)
report(late, "retained")

subscribe(sub, "paho/will", 1)
willer = client("paho-will")
willer.will_set("paho/will", "gone", qos=1, retain=False)
connect(willer)
willer.loop_stop()
willer.socket().close()  # gone without DISCONNECT
report(sub, "will")

for c in (sub, pub, late):
    c.disconnect()
    c.loop_stop()
print("DONE", flush=True)
"#;

/// A paho-mqtt script publishes and subscribes at QoS 0, 1 and 2, gets a retained message as a
/// late subscriber, and sees the will of a client whose socket closed, in MQTT 3.1.1 and 5.0.
#[test]
fn paho_mqtt_pubsub_retained_and_will() {
    if !tool_available(
        "Python paho-mqtt",
        Command::new("python3").args(["-c", "import paho.mqtt.client"]),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("paho_check.py");
    std::fs::write(&script, PAHO_SCRIPT).unwrap();
    let daemon = Daemon::start(dir.path(), PLAIN);
    let port = daemon.addr().port().to_string();
    for version in ["4", "5"] {
        let out = run_with_timeout(
            Command::new("python3")
                .arg(&script)
                .args(["127.0.0.1", &port, version]),
            Duration::from_secs(60),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "paho script (MQTT level {version}) failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            [
                "MSG qos0 paho/qos/0 0 0 hello at qos 0",
                "MSG qos1 paho/qos/1 1 0 hello at qos 1",
                "MSG qos2 paho/qos/2 2 0 hello at qos 2",
                "MSG retained paho/retained 1 1 kept",
                "MSG will paho/will 1 0 gone",
                "DONE",
            ],
            "MQTT level {version}"
        );
    }
}
