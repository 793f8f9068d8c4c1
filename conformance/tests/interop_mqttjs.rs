//! Interoperability with MQTT.js, the JavaScript client, running in headless Chromium and
//! reaching midge over WebSocket and WebSocket over TLS, with MQTT 3.1.1 and MQTT 5.0.
//!
//! Each test serves a page (interop/mqttjs/page.html and scenarios.js) and the pinned MQTT.js
//! browser bundle (`npm ci` in interop/mqttjs, or the file `MIDGE_MQTTJS_BUNDLE` names) from a
//! small HTTP server on 127.0.0.1, opens it in Chromium, and waits for the page to post what
//! MQTT.js saw in four scenarios: publish and receive at every QoS, retained messages, a will on
//! a dropped connection, and the resumption of a persistent session. The test then compares
//! that with what the protocol requires, line by line. A test is skipped with a notice where
//! Chromium or the bundle is missing, except under CI, which installs them (.ci/run).

use base64::Engine;
use midge_conformance::interop::{InteropBroker, Transport, tool_available};
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PAGE: &str = include_str!("../interop/mqttjs/page.html");
const SCENARIOS: &str = include_str!("../interop/mqttjs/scenarios.js");

/// How long the page may take for all four scenarios (it gives each at most 8 s), Chromium's
/// start included.
const RESULT_WAIT: Duration = Duration::from_secs(45);
/// How long one HTTP request from the page may take to arrive.
const REQUEST_WAIT: Duration = Duration::from_secs(10);
/// The scenarios, in the order the page runs them.
const SCENARIO_NAMES: [&str; 4] = ["qos", "retained", "will", "resume"];

#[test]
fn mqttjs_v311_over_websocket() {
    check_mqttjs(Version::V311, Transport::Ws);
}

#[test]
fn mqttjs_v311_over_secure_websocket() {
    check_mqttjs(Version::V311, Transport::Wss);
}

#[test]
fn mqttjs_v5_over_websocket() {
    check_mqttjs(Version::V5, Transport::Ws);
}

#[test]
fn mqttjs_v5_over_secure_websocket() {
    check_mqttjs(Version::V5, Transport::Wss);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V311,
    V5,
}

impl Version {
    /// MQTT.js's `protocolVersion`: the protocol level of CONNECT.
    fn protocol_level(self) -> u8 {
        match self {
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

/// Runs the four scenarios with MQTT.js against a fresh daemon and checks every outcome.
fn check_mqttjs(version: Version, transport: Transport) {
    let Some(bundle) = mqttjs_bundle() else {
        return;
    };
    if !chromium_available() {
        return;
    }
    let broker = InteropBroker::start(env!("CARGO_BIN_EXE_midge-under-test"));
    let server = PageServer::start(bundle);
    let prefix = format!("js{}{}", version.protocol_level(), transport.name());
    let url = format!(
        "http://{}/?broker={}&version={}&prefix={prefix}",
        server.addr(),
        percent_encode(&broker.url(transport)),
        version.protocol_level(),
    );
    let trusted_key = transport.is_tls().then(|| spki_sha256(&broker));
    let mut browser = Chromium::open(&url, trusted_key.as_deref());
    let outcome = server.wait_result(RESULT_WAIT, || browser.has_exited());
    let logs = server.logs();
    let Some(outcome) = outcome else {
        panic!(
            "the page posted no result (Chromium {})\npage log:\n{}\nChromium's last output:\n{}",
            if browser.has_exited() {
                "exited".to_owned()
            } else {
                format!("still running after {RESULT_WAIT:?}")
            },
            logs.join("\n"),
            browser.output_tail(40),
        );
    };
    drop(browser);
    assert_outcome(&outcome, &expected_outcome(&prefix), &logs);
}

/// What MQTT.js must see in each scenario, as the page records it: `what|details` lines, and
/// received messages as `message|topic|QoS|retain|payload`. It is the same for both protocol
/// versions (a SUBACK's MQTT 5 reason code for a success is the granted QoS).
fn expected_outcome(prefix: &str) -> BTreeMap<&'static str, Vec<String>> {
    let message = |topic: &str, qos: u8, retain: bool, payload: &str| {
        format!("message|{prefix}/{topic}|{qos}|{retain}|{payload}")
    };
    BTreeMap::from([
        (
            "qos",
            vec![
                "granted|2".to_owned(),
                "published|0".to_owned(),
                "published|1".to_owned(),
                "published|2".to_owned(),
                message("qos/0", 0, false, "payload at QoS 0"),
                message("qos/1", 1, false, "payload at QoS 1"),
                message("qos/2", 2, false, "payload at QoS 2"),
            ],
        ),
        (
            "retained",
            vec![
                "granted|1".to_owned(),
                message("retained", 1, true, "retained before the subscription"),
                // A message forwarded to an existing subscription carries no retain flag (3.1.1
                // [MQTT-3.3.1-9]; 5.0 with Retain As Published 0, [MQTT-3.3.1-12]).
                message("retained", 1, false, "retained during the subscription"),
            ],
        ),
        (
            "will",
            vec![
                "granted|1".to_owned(),
                "polite client sent|connect,disconnect".to_owned(),
                // No DISCONNECT went out: the WebSocket closed under an open MQTT connection.
                "dropped client sent|connect".to_owned(),
                // Only the dropped client's will: the broker discards a will on DISCONNECT.
                message("will", 1, false, "will of the dropped client"),
            ],
        ),
        (
            "resume",
            vec![
                "first connection, session present|false".to_owned(),
                "granted|1,2".to_owned(),
                "second connection, session present|true".to_owned(),
                message("resume/1", 1, false, "queued a at QoS 1"),
                message("resume/1", 1, false, "queued b at QoS 1"),
                message("resume/2", 2, false, "queued a at QoS 2"),
                message("resume/2", 2, false, "queued b at QoS 2"),
            ],
        ),
    ])
}

/// Compares the page's lines with the expected ones scenario by scenario, and fails naming every
/// scenario that differs.
fn assert_outcome(outcome: &str, expected: &BTreeMap<&str, Vec<String>>, logs: &[String]) {
    let mut actual: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for line in outcome.lines() {
        let (scenario, rest) = line.split_once('|').unwrap_or((line, ""));
        actual.entry(scenario).or_default().push(rest.to_owned());
    }
    for lines in actual.values_mut() {
        group_messages_by_topic(lines);
    }
    let mut differences = Vec::new();
    for name in SCENARIO_NAMES {
        let got = actual.remove(name).unwrap_or_default();
        if got != expected[name] {
            differences.push(format!(
                "scenario {name}:\n  expected {:#?}\n  got {got:#?}",
                expected[name]
            ));
        }
    }
    for (name, lines) in actual {
        differences.push(format!("lines of no scenario ({name}): {lines:?}"));
    }
    assert!(
        differences.is_empty(),
        "{}\npage log:\n{}",
        differences.join("\n"),
        logs.join("\n")
    );
}

/// Orders received messages by topic, keeping their order within each topic, and puts them after
/// the other lines. MQTT orders the messages of each topic alone [MQTT-4.6.0-6] (3.1.1), and
/// MQTT.js hands a QoS 2 message to the application only on PUBREL, after a QoS 1 message on
/// another topic the broker sent later.
fn group_messages_by_topic(lines: &mut [String]) {
    lines.sort_by_key(|line| {
        let mut fields = line.split('|');
        match (fields.next(), fields.next()) {
            (Some("message"), Some(topic)) => Some(topic.to_owned()),
            _ => None,
        }
    });
}

/// The MQTT.js browser bundle, from `MIDGE_MQTTJS_BUNDLE` or from node_modules after `npm ci`
/// in interop/mqttjs; `None` (the test skips) where it is missing.
fn mqttjs_bundle() -> Option<Vec<u8>> {
    let path = std::env::var_os("MIDGE_MQTTJS_BUNDLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("interop/mqttjs/node_modules/mqtt/dist/mqtt.min.js")
        });
    let name = format!(
        "the MQTT.js bundle {} (npm ci in conformance/interop/mqttjs)",
        path.display()
    );
    if !tool_available(&name, Command::new("test").arg("-f").arg(&path)) {
        return None;
    }
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())))
}

fn chromium_available() -> bool {
    tool_available(
        "chromium (Debian package chromium)",
        Command::new("chromium").arg("--version"),
    )
}

/// The base64 SHA-256 of the server key's SubjectPublicKeyInfo: Chromium accepts a certificate
/// with this key although no CA it trusts signed it (`--ignore-certificate-errors-spki-list`).
/// Only the test server's key is let through, where `--ignore-certificate-errors` would let
/// any certificate through.
fn spki_sha256(broker: &InteropBroker) -> String {
    use rcgen::PublicKeyData;
    let pem = std::fs::read_to_string(broker.server_key_file()).expect("read the server key");
    let key = rcgen::KeyPair::from_pem(&pem).expect("parse the server key");
    let digest = sha2::Sha256::digest(key.subject_public_key_info());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Percent-encodes everything but unreserved characters, for a URL in a query string.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What the page posts.
#[derive(Debug)]
enum PageEvent {
    Log(String),
    Result(String),
}

/// An HTTP server on 127.0.0.1 for one page: it serves the page, the scenarios and the MQTT.js
/// bundle, and takes the page's log lines and result. Each connection has a thread of its own:
/// Chromium opens connections ahead of need and may leave one idle.
#[derive(Debug)]
struct PageServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    events: Receiver<PageEvent>,
    logs: Mutex<Vec<String>>,
}

impl PageServer {
    fn start(bundle: Vec<u8>) -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
        let addr = listener.local_addr().expect("page server address");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, events) = mpsc::channel();
        let bundle = Arc::new(bundle);
        let accept = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (bundle, tx) = (Arc::clone(&bundle), tx.clone());
                    std::thread::spawn(move || serve(stream, &bundle, &tx));
                }
            })
        };
        PageServer {
            addr,
            stop,
            accept: Some(accept),
            events,
            logs: Mutex::new(Vec::new()),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits up to `limit` for the page's result, keeping the log lines that come before it;
    /// gives up early once `browser_gone` says no result can come any more.
    fn wait_result(
        &self,
        limit: Duration,
        mut browser_gone: impl FnMut() -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.events.recv_timeout(Duration::from_millis(200)) {
                Ok(PageEvent::Log(line)) => self.logs.lock().unwrap().push(line),
                Ok(PageEvent::Result(result)) => return Some(result),
                Err(RecvTimeoutError::Timeout) if !browser_gone() => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// The page's log lines so far.
    fn logs(&self) -> Vec<String> {
        let mut logs = self.logs.lock().unwrap();
        while let Ok(event) = self.events.try_recv() {
            if let PageEvent::Log(line) = event {
                logs.push(line);
            }
        }
        logs.clone()
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Answers one request: a GET of the page or its scripts, or a POST of a log line or the result.
fn serve(stream: TcpStream, bundle: &[u8], events: &Sender<PageEvent>) {
    let _ = stream.set_read_timeout(Some(REQUEST_WAIT));
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let Some((method, path, body)) = read_request(BufReader::new(stream)) else {
        return;
    };
    let path = path.split('?').next().unwrap_or_default();
    let response = match (method.as_str(), path) {
        ("GET", "/") => Some(("text/html; charset=utf-8", PAGE.as_bytes())),
        ("GET", "/scenarios.js") => Some(("text/javascript", SCENARIOS.as_bytes())),
        ("GET", "/mqtt.min.js") => Some(("text/javascript", bundle)),
        ("POST", "/log") => {
            let _ = events.send(PageEvent::Log(String::from_utf8_lossy(&body).into_owned()));
            Some(("text/plain", &[][..]))
        }
        ("POST", "/result") => {
            let _ = events.send(PageEvent::Result(
                String::from_utf8_lossy(&body).into_owned(),
            ));
            Some(("text/plain", &[][..]))
        }
        _ => None,
    };
    let _ = write_response(writer, response);
}

/// The method, target and body of an HTTP/1.1 request; `None` if the connection closes or
/// times out first.
fn read_request(mut reader: BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut content_length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    Some((method, target, body))
}

/// Writes `200` with the content, or `404` for `None`, and closes the connection.
fn write_response(mut stream: TcpStream, content: Option<(&str, &[u8])>) -> std::io::Result<()> {
    let (status, content_type, body) = match content {
        Some((content_type, body)) => ("200 OK", content_type, body),
        None => ("404 Not Found", "text/plain", &b"not found"[..]),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

/// Headless Chromium showing one page, with a profile of its own; killed when dropped. Its
/// output (errors about the missing D-Bus and GPU, the page's console) is kept for a failure
/// message and otherwise ignored.
#[derive(Debug)]
struct Chromium {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Opens `url`. With `trusted_key` (see [`spki_sha256`]) Chromium accepts the certificate of
    /// that key.
    fn open(url: &str, trusted_key: Option<&str>) -> Chromium {
        let profile = tempfile::tempdir().expect("temporary profile directory");
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless",
                // Running as root (CI) rules out the sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                // No connections of Chromium's own (updates, sync, field trials): the machine
                // may have no network beyond loopback.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // The page's console on stderr, for failure messages.
                "--enable-logging=stderr",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()));
        if let Some(key) = trusted_key {
            command.arg(format!("--ignore-certificate-errors-spki-list={key}"));
        }
        let mut child = command
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromium: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    output.lock().unwrap().push(line);
                }
            });
        }
        Chromium {
            child,
            output,
            _profile: profile,
        }
    }

    /// Whether Chromium has exited (crashed, or refused its arguments).
    fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `count` lines Chromium printed.
    fn output_tail(&self, count: usize) -> String {
        let output = self.output.lock().unwrap();
        output[output.len().saturating_sub(count)..].join("\n")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
