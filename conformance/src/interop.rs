//! Interoperability with real MQTT clients: a midge daemon listening on every transport a client
//! may use (MQTT over TCP, over TLS, over WebSocket and over WebSocket with TLS), with a test CA
//! whose certificate the clients trust, and the rules for client tools that may be missing.
//!
//! The interoperability tests (tests/interop_*.rs) drive independent client implementations
//! against it: Mosquitto's command line clients, Python paho-mqtt, the Rust client rumqttc and
//! MQTT.js in headless Chromium. They always run against midge: what they check is that real
//! clients and midge understand each other, not a broker given by address.

use crate::target::{self, Target};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The ways a client can reach the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// MQTT over TCP.
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT in binary WebSocket frames (path `/mqtt`, subprotocol `mqtt`).
    Ws,
    /// MQTT in WebSocket frames over TLS.
    Wss,
}

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// A short name for test output and client arguments: `tcp`, `tls`, `ws`, `wss`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// Whether the connection is encrypted (the client must trust [`InteropBroker::ca_file`]).
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// Whether MQTT travels in WebSocket frames.
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }
}

/// A midge daemon with one listener per [`Transport`], all on 127.0.0.1 with ports the system
/// picked, anonymous clients allowed. The server certificate names `127.0.0.1` and `localhost`.
/// The daemon stops when this is dropped (and when the test process ends: it watches its stdin).
#[derive(Debug)]
pub struct InteropBroker {
    daemon: Target,
    /// The test CA and server certificate, and room for the tests' own files.
    dir: tempfile::TempDir,
}

impl InteropBroker {
    /// Starts the daemon. `midge_bin` is `env!("CARGO_BIN_EXE_midge-under-test")`.
    pub fn start(midge_bin: &str) -> InteropBroker {
        Self::start_with(midge_bin, "")
    }

    /// Starts the daemon with `extra` lines of mosquitto.conf before the listeners (global
    /// options such as `max_queued_messages`).
    pub fn start_with(midge_bin: &str, extra: &str) -> InteropBroker {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pki = TestPki::new();
        let ca = dir.path().join("ca.pem");
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::write(&ca, &pki.ca_pem).expect("write ca.pem");
        std::fs::write(&cert, &pki.server_cert_pem).expect("write server.pem");
        std::fs::write(&key, &pki.server_key_pem).expect("write server.key");
        let tls = format!("certfile {}\nkeyfile {}\n", cert.display(), key.display());
        // The listeners in the order of Transport::ALL: the daemon reports them in this order.
        let config = format!(
            "allow_anonymous true\n{extra}\n\
             listener 0 127.0.0.1\n\
             listener 0 127.0.0.1\n{tls}\
             listener 0 127.0.0.1\nprotocol websockets\n\
             listener 0 127.0.0.1\nprotocol websockets\n{tls}"
        );
        InteropBroker {
            daemon: target::start_with_config(midge_bin, &config),
            dir,
        }
    }

    /// The address of the listener for `transport`.
    pub fn addr(&self, transport: Transport) -> SocketAddr {
        let i = Transport::ALL
            .iter()
            .position(|t| *t == transport)
            .expect("a transport of ALL");
        self.daemon.listener_addr(i)
    }

    /// The port of the listener for `transport`.
    pub fn port(&self, transport: Transport) -> u16 {
        self.addr(transport).port()
    }

    /// The URL a client library takes: `mqtt://`, `mqtts://`, `ws://…/mqtt` or `wss://…/mqtt`.
    /// TLS URLs name `localhost`, which the certificate covers, for clients that check the name
    /// against DNS names only.
    pub fn url(&self, transport: Transport) -> String {
        let port = self.port(transport);
        match transport {
            Transport::Tcp => format!("mqtt://127.0.0.1:{port}"),
            Transport::Tls => format!("mqtts://localhost:{port}"),
            Transport::Ws => format!("ws://127.0.0.1:{port}/mqtt"),
            Transport::Wss => format!("wss://localhost:{port}/mqtt"),
        }
    }

    /// The PEM file of the CA that signed the server certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The PEM file of the server's private key (PKCS #8), for clients that pin the server's
    /// public key instead of trusting the CA.
    pub fn server_key_file(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A temporary directory that lives as long as the broker, for a test's scripts and pages.
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A CA and a server certificate it signed for 127.0.0.1 and localhost, in PEM.
#[derive(Debug)]
struct TestPki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

impl TestPki {
    fn new() -> TestPki {
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "midge interop test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &issuer).expect("sign");
        TestPki {
            ca_pem: ca_cert.pem(),
            server_cert_pem: cert.pem(),
            server_key_pem: key.serialize_pem(),
        }
    }
}

/// Whether a client tool is installed, found by running `probe` (which must exit 0). Where it
/// is missing the test is skipped with a notice on stderr, except when the environment variable
/// `CI` is set: .ci/run installs every tool, so there a missing one fails the test.
pub fn tool_available(name: &str, probe: &mut Command) -> bool {
    let found = probe
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is not installed; .ci/run installs it");
        }
        // Straight to the process's stderr: the harness hides what a passing test prints.
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: {name} is not installed; skipping this test"
        );
    }
    found
}

/// The output of a command run to completion within `limit`; the command is killed (and the
/// test fails) if it takes longer.
pub fn run_with_timeout(command: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = read(Box::new(out));
    let err = read(Box::new(err));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
            let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
            panic!(
                "{command:?} did not finish within {limit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The four interoperability scenarios for one protocol version on one transport, as a module
/// of four tests calling the test file's `every_qos`, `retained`, `will` and `session_resume`
/// with the version and transport given:
/// `interop_scenarios! { v5_tls: Version::V5, Transport::Tls; }`.
#[macro_export]
macro_rules! interop_scenarios {
    ($($module:ident: $version:expr, $transport:expr;)*) => {$(
        mod $module {
            use super::*;

            #[test]
            fn every_qos() {
                super::every_qos($version, $transport);
            }

            #[test]
            fn retained() {
                super::retained($version, $transport);
            }

            #[test]
            fn will() {
                super::will($version, $transport);
            }

            #[test]
            fn session_resume() {
                super::session_resume($version, $transport);
            }
        }
    )*};
}
