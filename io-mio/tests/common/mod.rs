//! What the daemon's integration tests share: a running `midge` process on ephemeral ports, a
//! small blocking MQTT client on top of midge-core's codec (over TCP, TLS, WebSocket and Unix
//! sockets), test certificates, and helpers that run processes and read their output.
//!
//! Every wait has a deadline: reads carry socket timeouts and conditions are polled against a
//! clock, so a broken daemon fails a test instead of hanging it.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use midge_core::codec::{
    ByteString, ConnAck, Connect, ConnectProperties, ConnectReason, DecodeError, Disconnect,
    DisconnectReason, LastWill, MAX_PACKET_SIZE, Packet, PacketId, ProtocolVersion, PubAck,
    PubAckReason, PubComp, PubRec, PubRel, Publish, PublishProperties, QoS, QosPid, SubAckReason,
    Subscribe, SubscribeProperties, Subscription, SubscriptionOptions, WillProperties, decode_from,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a daemon may take to exit after SIGTERM.
const EXIT_WAIT: Duration = Duration::from_secs(10);

pub const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;
pub const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

/// The daemon binary under test.
pub fn midge_bin() -> &'static str {
    env!("CARGO_BIN_EXE_midge")
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends a signal ("TERM", "HUP", ...) to a process, with the shell's `kill`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -{signal} {pid}")])
        .status()
        .expect("run sh -c kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Waits for a child process to exit, at most `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status
}

/// Runs a command to completion, killing it (and failing the test) after `timeout`.
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stdout = spawn_collector(child.stdout.take().expect("stdout"));
    let stderr = spawn_collector(child.stderr.take().expect("stderr"));
    let status = match wait_exit(&mut child, timeout) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} still running after {timeout:?}; stderr so far:\n{}",
                String::from_utf8_lossy(&stderr.join().unwrap_or_default())
            );
        }
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn spawn_collector(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = from.read_to_end(&mut all);
        all
    })
}

// ------------------------------------------------------------------------------------------
// Lines a child process prints
// ------------------------------------------------------------------------------------------

/// Lines read from a child's pipe by a background thread, for tests to wait on.
#[derive(Debug, Default)]
pub struct Lines {
    state: Mutex<LinesState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct LinesState {
    lines: Vec<String>,
    /// The pipe reached its end (the process exited or closed it).
    closed: bool,
}

impl Lines {
    /// Reads `from` line by line in a thread; each line is also echoed (prefixed with `label`)
    /// to the test's output, which the test harness shows when the test fails.
    pub fn collect(from: impl Read + Send + 'static, label: &'static str) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = line.trim_end().to_owned();
                        eprintln!("[{label}] {text}");
                        sink.state.lock().unwrap().lines.push(text);
                        sink.changed.notify_all();
                    }
                }
            }
            sink.state.lock().unwrap().closed = true;
            sink.changed.notify_all();
        });
        lines
    }

    /// How many lines have been read so far.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().lines.len()
    }

    /// Every line read so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.state.lock().unwrap().lines.clone()
    }

    /// Waits until `done` holds over the lines read so far, the pipe closes, or `timeout`
    /// passes. Returns whether `done` held.
    pub fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        loop {
            if done(&state.lines) {
                return true;
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// Waits for a line, from index `from` on, that contains `needle`; returns it.
    pub fn wait_line(&self, from: usize, needle: &str, timeout: Duration) -> Option<String> {
        let mut found = None;
        self.wait_for(timeout, |lines| {
            found = lines
                .iter()
                .skip(from)
                .find(|l| l.contains(needle))
                .cloned();
            found.is_some()
        });
        found
    }
}

// ------------------------------------------------------------------------------------------
// The daemon
// ------------------------------------------------------------------------------------------

/// One listening socket, as the daemon's `listening on ADDR (KIND)` log line tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// `127.0.0.1:PORT`, or the path of a Unix socket.
    pub addr: String,
    /// `mqtt`, `mqtt+tls`, `websockets` or `websockets+tls`.
    pub kind: String,
}

impl Listening {
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
            .parse()
            .unwrap_or_else(|e| panic!("{} is not a TCP address: {e}", self.addr))
    }

    pub fn port(&self) -> u16 {
        self.socket_addr().port()
    }
}

/// A running `midge` daemon. Dropping it stops it: SIGTERM, then SIGKILL if it does not exit.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    pub config: PathBuf,
    pub log: Arc<Lines>,
    pub listeners: Vec<Listening>,
}

impl Daemon {
    /// Writes `config` to `dir/midge.conf` and starts `midge -c` on it. Waits until the daemon
    /// logged one `listening on` line per `listener` line of the configuration.
    pub fn start(dir: &Path, config: &str) -> Daemon {
        Daemon::start_with_args(dir, config, &[])
    }

    pub fn start_with_args(dir: &Path, config: &str, args: &[&str]) -> Daemon {
        let path = dir.join("midge.conf");
        std::fs::write(&path, config).expect("write midge.conf");
        let expected = config
            .lines()
            .filter(|l| l.trim_start().starts_with("listener "))
            .count();
        assert!(expected > 0, "the configuration has no listener line");
        let mut child = Command::new(midge_bin())
            .arg("-c")
            .arg(&path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start midge");
        let log = Lines::collect(child.stderr.take().expect("stderr"), "midge");
        let mut daemon = Daemon {
            child,
            config: path,
            log,
            listeners: Vec::new(),
        };
        let started = daemon.log.wait_for(WAIT, |lines| {
            lines.iter().filter_map(|l| parse_listening(l)).count() >= expected
        });
        if !started {
            let status = daemon.child.try_wait().expect("try_wait");
            panic!(
                "midge did not report {expected} listeners (exit status {status:?}); log:\n{}",
                daemon.log.snapshot().join("\n")
            );
        }
        daemon.listeners = daemon
            .log
            .snapshot()
            .iter()
            .filter_map(|l| parse_listening(l))
            .collect();
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first listener's TCP address.
    pub fn addr(&self) -> SocketAddr {
        self.listeners[0].socket_addr()
    }

    /// The first listener of `kind`.
    pub fn listener(&self, kind: &str) -> &Listening {
        self.listeners
            .iter()
            .find(|l| l.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} listener in {:?}", self.listeners))
    }

    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends SIGTERM and waits for the daemon to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit()
    }

    /// Waits for the daemon to exit (after a signal was sent).
    pub fn wait_exit(&mut self) -> ExitStatus {
        match wait_exit(&mut self.child, EXIT_WAIT) {
            Some(status) => status,
            None => panic!("midge did not exit within {EXIT_WAIT:?}"),
        }
    }

    /// The resident memory of the daemon, in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status();
        if wait_exit(&mut self.child, EXIT_WAIT).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address and kind of a `listening on ADDR (KIND)` log line.
fn parse_listening(line: &str) -> Option<Listening> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let open = rest.rfind(" (")?;
    let kind = rest[open + 2..].strip_suffix(')')?;
    Some(Listening {
        addr: rest[..open].to_owned(),
        kind: kind.to_owned(),
    })
}

/// Runs `midge ARGS` to completion (at most [`WAIT`]).
pub fn run_midge(args: &[&str]) -> Output {
    run_with_timeout(Command::new(midge_bin()).args(args), WAIT)
}

/// Writes a password file with `midge passwd -b`, creating it when `create`.
pub fn add_password(file: &Path, user: &str, password: &str, create: bool) {
    let file = file.to_str().expect("utf-8 path");
    let mut args = vec!["passwd"];
    if create {
        args.push("-c");
    }
    args.extend(["-b", file, user, password]);
    let out = run_midge(&args);
    assert!(
        out.status.success(),
        "midge {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------------------------------------
// Streams under the client
// ------------------------------------------------------------------------------------------

/// A blocking byte stream whose reads can be given a timeout.
pub trait Stream: Read + Write + Send {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Stream for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

impl Stream for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
}

pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Stream for TlsStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }
}

/// MQTT over WebSocket: each write is one binary message, reads return message contents.
pub struct WsStream<S: Stream> {
    pub ws: tungstenite::WebSocket<S>,
    pending: Bytes,
    /// The subprotocol the server selected (`Sec-WebSocket-Protocol` of its answer).
    pub protocol: Option<String>,
}

impl<S: Stream> Read for WsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            match self.ws.read() {
                Ok(tungstenite::Message::Binary(data)) => self.pending = data,
                Ok(tungstenite::Message::Close(_)) => return Ok(0),
                Ok(tungstenite::Message::Text(_)) => {
                    return Err(io::Error::other("text message on an MQTT WebSocket"));
                }
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(0);
                }
                Err(tungstenite::Error::Io(e)) => return Err(e),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

impl<S: Stream> Write for WsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ws
            .send(tungstenite::Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(|e| match e {
                tungstenite::Error::Io(e) => e,
                e => io::Error::other(e),
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ws.flush().map_err(io::Error::other)
    }
}

impl<S: Stream> Stream for WsStream<S> {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.ws.get_ref().set_read_timeout(timeout)
    }
}

/// A TCP connection to `addr` with a read timeout.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s =
        TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
    s.set_write_timeout(Some(WAIT)).expect("write timeout");
    s
}

/// The WebSocket upgrade over `stream`, offering `subprotocol` when given.
pub fn websocket<S: Stream>(
    stream: S,
    url: &str,
    subprotocol: Option<&str>,
) -> Result<WsStream<S>, tungstenite::Error> {
    let uri: tungstenite::http::Uri = url.parse().expect("URL");
    let mut request = tungstenite::ClientRequestBuilder::new(uri);
    if let Some(p) = subprotocol {
        request = request.with_sub_protocol(p);
    }
    match tungstenite::client(request, stream) {
        Ok((ws, response)) => Ok(WsStream {
            ws,
            pending: Bytes::new(),
            protocol: response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().expect("ASCII header").to_owned()),
        }),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("WebSocket handshake timed out")
        }
    }
}

// ------------------------------------------------------------------------------------------
// Certificates
// ------------------------------------------------------------------------------------------

/// A test CA that signs a server certificate for 127.0.0.1 and localhost, and client
/// certificates by Common Name. PEM files are written where asked.
pub struct Pki {
    ca_cert: rcgen::Certificate,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate with its key, in PEM.
#[derive(Debug, Clone)]
pub struct CertPem {
    pub cert: String,
    pub key: String,
}

impl Pki {
    pub fn new(ca_name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ca_name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let ca_cert = params.self_signed(&key).expect("CA certificate");
        Pki {
            ca_cert,
            ca: rcgen::Issuer::new(params, key),
        }
    }

    pub fn ca_pem(&self) -> String {
        self.ca_cert.pem()
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_cert.der().clone()
    }

    fn issue(
        &self,
        names: Vec<String>,
        cn: &str,
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> CertPem {
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        CertPem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self) -> CertPem {
        self.issue(
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            "localhost",
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate whose subject's Common Name is `cn`.
    pub fn client(&self, cn: &str) -> CertPem {
        self.issue(Vec::new(), cn, rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// Writes `ca.pem`, `server.pem` and `server.key` in `dir`; returns the listener options
    /// that name them (certfile, keyfile; cafile when `with_ca`).
    pub fn write_server_files(&self, dir: &Path, with_ca: bool) -> String {
        let server = self.server();
        std::fs::write(dir.join("ca.pem"), self.ca_pem()).expect("write ca.pem");
        std::fs::write(dir.join("server.pem"), &server.cert).expect("write server.pem");
        std::fs::write(dir.join("server.key"), &server.key).expect("write server.key");
        let mut options = format!(
            "certfile {}\nkeyfile {}\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        );
        if with_ca {
            options += &format!("cafile {}\n", dir.join("ca.pem").display());
        }
        options
    }

    /// A rustls client configuration trusting this CA, presenting `client` if given.
    pub fn client_config(&self, client: Option<&CertPem>) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).expect("add CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots);
        let config = match client {
            Some(c) => {
                let certs = vec![CertificateDer::from_pem_slice(c.cert.as_bytes()).expect("cert")];
                let key = PrivateKeyDer::from_pem_slice(c.key.as_bytes()).expect("key");
                builder
                    .with_client_auth_cert(certs, key)
                    .expect("client certificate")
            }
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

/// A TLS connection to `addr` (server name 127.0.0.1). The handshake runs with the first
/// read or write.
pub fn tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsStream {
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(config, name).expect("TLS client");
    rustls::StreamOwned::new(conn, tcp(addr))
}

// ------------------------------------------------------------------------------------------
// The MQTT client
// ------------------------------------------------------------------------------------------

/// Why no packet came.
#[derive(Debug)]
pub enum RecvError {
    /// Nothing within the time allowed.
    Timeout,
    /// The server closed the connection.
    Closed,
    /// The stream failed (a TLS alert, a reset...).
    Io(io::Error),
    /// The server sent something the codec refuses.
    Decode(DecodeError),
}

/// CONNECT as a test wants it; [`ConnectOptions::new`] fills in the rest.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub connect: Connect,
}

impl ConnectOptions {
    pub fn new(version: ProtocolVersion, client_id: &str) -> ConnectOptions {
        ConnectOptions {
            connect: Connect {
                protocol_version: version,
                bridge: false,
                clean_start: true,
                keep_alive: 60,
                properties: ConnectProperties::default(),
                client_id: ByteString::from(client_id),
                will: None,
                username: None,
                password: None,
            },
        }
    }

    pub fn credentials(mut self, username: &str, password: Option<&str>) -> ConnectOptions {
        self.connect.username = Some(ByteString::from(username));
        self.connect.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
        self
    }

    pub fn will(mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> ConnectOptions {
        self.connect.will = Some(LastWill {
            topic: ByteString::from(topic),
            payload: Bytes::copy_from_slice(payload),
            qos,
            retain,
            properties: WillProperties::default(),
        });
        self
    }
}

/// A blocking MQTT client for tests. Packets that arrive while the client waits for something
/// else (a PUBLISH while it waits for a PUBACK) are kept for the next [`Client::recv`].
pub struct Client {
    stream: Box<dyn Stream>,
    pub version: ProtocolVersion,
    buf: BytesMut,
    kept: VecDeque<Packet>,
    next_id: u16,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client on `stream`; nothing is sent yet.
    pub fn new(stream: impl Stream + 'static, version: ProtocolVersion) -> Client {
        Client {
            stream: Box::new(stream),
            version,
            buf: BytesMut::with_capacity(64 * 1024),
            kept: VecDeque::new(),
            next_id: 0,
        }
    }

    /// Connects over TCP with a clean session and checks the CONNACK accepts.
    pub fn connect(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> Client {
        Client::connect_with(tcp(addr), ConnectOptions::new(version, client_id))
    }

    /// Connects over `stream` and checks the CONNACK accepts.
    pub fn connect_with(stream: impl Stream + 'static, options: ConnectOptions) -> Client {
        let mut client = Client::new(stream, options.connect.protocol_version);
        let ack = client.handshake(options);
        assert_eq!(ack.reason, ConnectReason::Success, "CONNACK refused");
        client
    }

    /// Sends CONNECT and returns the CONNACK, whatever it says.
    pub fn handshake(&mut self, options: ConnectOptions) -> ConnAck {
        self.send(&Packet::from(options.connect));
        match self.recv() {
            Packet::ConnAck(ack) => *ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub fn send(&mut self, packet: &Packet) {
        self.try_send(packet).expect("write to the daemon");
    }

    /// Sends a packet, reporting a failed write instead of panicking.
    pub fn try_send(&mut self, packet: &Packet) -> io::Result<()> {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encode");
        self.stream.write_all(&out)?;
        self.stream.flush()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the daemon");
        self.stream.flush().expect("flush");
    }

    fn packet_id(&mut self) -> PacketId {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        PacketId::new(self.next_id).expect("non-zero")
    }

    /// The next packet, within `timeout`.
    pub fn try_recv(&mut self, timeout: Duration) -> Result<Packet, RecvError> {
        if let Some(p) = self.kept.pop_front() {
            return Ok(p);
        }
        self.read_packet(timeout)
    }

    fn read_packet(&mut self, timeout: Duration) -> Result<Packet, RecvError> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match decode_from(&mut self.buf, self.version, MAX_PACKET_SIZE) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(RecvError::Decode(e)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvError::Timeout);
            }
            self.stream
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
                .map_err(RecvError::Io)?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(RecvError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::BrokenPipe
                            | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Err(RecvError::Closed);
                }
                Err(e) => return Err(RecvError::Io(e)),
            }
        }
    }

    /// The next packet, within [`WAIT`].
    pub fn recv(&mut self) -> Packet {
        self.try_recv(WAIT)
            .unwrap_or_else(|e| panic!("no packet from the daemon: {e:?}"))
    }

    /// Reads (outside what was kept) until a packet satisfies `want`; others are kept.
    fn recv_matching(&mut self, what: &str, mut want: impl FnMut(&Packet) -> bool) -> Packet {
        if let Some(i) = self.kept.iter().position(&mut want) {
            return self.kept.remove(i).expect("kept packet");
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_packet(left) {
                Ok(p) if want(&p) => return p,
                Ok(p) => self.kept.push_back(p),
                Err(e) => panic!("waiting for {what}: {e:?}"),
            }
        }
    }

    /// Subscribes to `filter` at `qos`; returns the SUBACK's reason.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAckReason {
        self.subscribe_with(filter, SubscriptionOptions::new(qos))
    }

    pub fn subscribe_with(&mut self, filter: &str, options: SubscriptionOptions) -> SubAckReason {
        let packet_id = self.packet_id();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            properties: SubscribeProperties::default(),
            subscriptions: vec![Subscription {
                filter: ByteString::from(filter),
                options,
            }],
        }));
        match self.recv_matching(
            "SUBACK",
            |p| matches!(p, Packet::SubAck(a) if a.packet_id == packet_id),
        ) {
            Packet::SubAck(ack) => {
                assert_eq!(
                    ack.reasons.len(),
                    1,
                    "one reason per filter: [MQTT-3.8.4-5] (3.1.1) [MQTT-3.8.4-6] (5.0)"
                );
                ack.reasons[0]
            }
            _ => unreachable!(),
        }
    }

    /// Subscribes and checks the subscription was granted at `qos`.
    pub fn sub(&mut self, filter: &str, qos: QoS) {
        let reason = self.subscribe(filter, qos);
        assert_eq!(reason, SubAckReason::granted(qos), "SUBACK for {filter}");
    }

    /// Publishes and completes the QoS flow; returns the PUBACK or PUBREC reason (success for
    /// QoS 0, where there is none).
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> PubAckReason {
        let packet_id = self.packet_id();
        self.send(&publish_packet(topic, payload, qos, retain, packet_id));
        match qos {
            QoS::AtMostOnce => PubAckReason::Success,
            QoS::AtLeastOnce => {
                match self.recv_matching(
                    "PUBACK",
                    |p| matches!(p, Packet::PubAck(a) if a.packet_id == packet_id),
                ) {
                    Packet::PubAck(ack) => ack.reason,
                    _ => unreachable!(),
                }
            }
            QoS::ExactlyOnce => {
                let rec = match self.recv_matching(
                    "PUBREC",
                    |p| matches!(p, Packet::PubRec(a) if a.packet_id == packet_id),
                ) {
                    Packet::PubRec(rec) => rec,
                    _ => unreachable!(),
                };
                if rec.reason.is_error() {
                    return rec.reason;
                }
                self.send(&Packet::PubRel(PubRel::success(packet_id)));
                self.recv_matching(
                    "PUBCOMP",
                    |p| matches!(p, Packet::PubComp(a) if a.packet_id == packet_id),
                );
                rec.reason
            }
        }
    }

    /// Publishes at QoS 0 without waiting for anything.
    pub fn publish_qos0(&mut self, topic: &str, payload: &[u8]) {
        let id = PacketId::MIN;
        self.send(&publish_packet(topic, payload, QoS::AtMostOnce, false, id));
    }

    /// Waits for a PUBLISH (at most [`WAIT`]) and acknowledges it as its QoS requires.
    pub fn recv_publish(&mut self) -> Publish {
        self.try_recv_publish(WAIT)
            .unwrap_or_else(|e| panic!("expected a PUBLISH: {e:?}"))
    }

    /// Like [`Client::recv_publish`] within `timeout`; any other packet is an error.
    pub fn try_recv_publish(&mut self, timeout: Duration) -> Result<Publish, RecvError> {
        let p = match self.try_recv(timeout)? {
            Packet::Publish(p) => p,
            other => panic!("expected a PUBLISH, got {other:?}"),
        };
        match p.qos_pid {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(id) => self.send(&Packet::PubAck(PubAck::success(id))),
            QosPid::ExactlyOnce(id) => {
                self.send(&Packet::PubRec(PubRec::success(id)));
                self.recv_matching(
                    "PUBREL",
                    |p| matches!(p, Packet::PubRel(r) if r.packet_id == id),
                );
                self.send(&Packet::PubComp(PubComp::success(id)));
            }
        }
        Ok(p)
    }

    /// Waits for a PUBLISH and checks its topic and payload.
    pub fn expect_message(&mut self, topic: &str, payload: &[u8]) -> Publish {
        let p = self.recv_publish();
        assert_eq!(
            (&*p.topic, &p.payload[..]),
            (topic, payload),
            "unexpected message"
        );
        p
    }

    /// Checks the server closes the connection within [`WAIT`], sending nothing first.
    pub fn expect_closed(&mut self) {
        match self.try_recv(WAIT) {
            Err(RecvError::Closed) => {}
            other => panic!("expected the daemon to close the connection, got {other:?}"),
        }
    }

    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::new(
            DisconnectReason::NormalDisconnection,
        )));
    }

    /// Sends PINGREQ and waits for PINGRESP: a round trip that proves the connection is alive
    /// and that everything the daemon sent before has been read.
    pub fn ping(&mut self) {
        self.send(&Packet::PingReq);
        self.recv_matching("PINGRESP", |p| matches!(p, Packet::PingResp));
    }
}

pub fn publish_packet(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    packet_id: PacketId,
) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::new(qos, packet_id),
        retain,
        topic: ByteString::from(topic),
        properties: PublishProperties::default(),
        payload: Bytes::copy_from_slice(payload),
    })
}
