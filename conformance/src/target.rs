//! The broker under test. By default the midge daemon of this workspace, started once per test
//! process on 127.0.0.1 port 0 from a configuration written to a temporary directory; with
//! `MIDGE_CONFORMANCE_ADDR=host:port`, whatever broker listens there (Mosquitto, for comparison).
//! Tests share the one broker and keep apart by their names (see [`crate::names`]).

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

/// The environment variable naming another broker's address.
pub const ADDR_VAR: &str = "MIDGE_CONFORMANCE_ADDR";

/// How long the daemon may take to bind its listener.
const START_WAIT: Duration = Duration::from_secs(20);

/// The configuration the daemon runs with: one plain listener on loopback, anonymous clients
/// allowed, every other option at its default (the defaults a deployment starts from).
const MIDGE_CONFIG: &str = "listener 0 127.0.0.1\nallow_anonymous true\n";

/// A broker the suite talks to.
#[derive(Debug)]
pub struct Target {
    /// Its listeners, in the order the configuration defines them.
    addrs: Vec<SocketAddr>,
    /// The daemon this process started; `None` for a broker given by address. Its stdin pipe
    /// stays open as long as this process lives: when it closes, the daemon exits.
    daemon: Option<Child>,
}

impl Target {
    /// The broker's address (of its first listener).
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The address of the listener the configuration defines `index`th (0 is [`Target::addr`]):
    /// for a daemon of [`configured_midge`] whose extra lines add listeners.
    pub fn listener_addr(&self, index: usize) -> SocketAddr {
        *self.addrs.get(index).unwrap_or_else(|| {
            panic!(
                "the broker has {} listeners, not {}",
                self.addrs.len(),
                index + 1
            )
        })
    }

    /// Whether the broker is the daemon this process started (rather than one given by address).
    pub fn is_local_midge(&self) -> bool {
        self.daemon.is_some()
    }
}

/// The broker under test for this process: started (or resolved) on first use. `midge_bin` is
/// the `midge-under-test` binary, `env!("CARGO_BIN_EXE_midge-under-test")` in a test.
pub fn target(midge_bin: &str) -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| match std::env::var(ADDR_VAR) {
        Ok(addr) if !addr.is_empty() => Target {
            addrs: vec![resolve(&addr)],
            daemon: None,
        },
        _ => start_midge(midge_bin),
    })
}

fn resolve(addr: &str) -> SocketAddr {
    addr.to_socket_addrs()
        .unwrap_or_else(|e| panic!("{ADDR_VAR}={addr}: {e}"))
        .next()
        .unwrap_or_else(|| panic!("{ADDR_VAR}={addr} resolves to no address"))
}

/// A daemon of its own for a test that needs options the shared one does not have: the
/// default configuration plus `extra` (lines of mosquitto.conf), with `files` (name, contents)
/// written next to it; `{dir}` in `extra` stands for their directory. Listener options in
/// `extra` before any `listener` line apply to the default configuration's listener; listeners
/// `extra` adds are reached with [`Target::listener_addr`]. `None` when the suite
/// runs against a broker given by address, whose configuration it cannot choose: the test
/// then has nothing to check. The daemon stops when the returned target is dropped.
pub fn configured_midge(midge_bin: &str, extra: &str, files: &[(&str, &str)]) -> Option<Target> {
    if std::env::var(ADDR_VAR).is_ok_and(|a| !a.is_empty()) {
        return None;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents)
            .unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
    let extra = extra.replace("{dir}", &dir.path().display().to_string());
    Some(start_in(
        midge_bin,
        dir,
        &format!("{MIDGE_CONFIG}{extra}\n"),
    ))
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.daemon {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A daemon of this workspace with `config` as its whole configuration (written to a
/// temporary directory), whatever broker the suite otherwise targets: for the interoperability
/// tests, which check midge itself. Its listeners are reached with [`Target::listener_addr`],
/// in the order `config` defines them.
pub fn start_with_config(bin: &str, config: &str) -> Target {
    let dir = tempfile::tempdir().expect("temporary directory");
    start_in(bin, dir, config)
}

/// Starts the daemon with the default configuration.
fn start_midge(bin: &str) -> Target {
    let dir = tempfile::tempdir().expect("temporary directory");
    start_in(bin, dir, MIDGE_CONFIG)
}

/// Starts the daemon with `config` written to `dir` and waits for its `listening on ADDR` line
/// for each listener `config` defines (one socket each: the suite listens on 127.0.0.1).
fn start_in(bin: &str, dir: tempfile::TempDir, config: &str) -> Target {
    let listeners = config
        .lines()
        .filter(|line| line.split_whitespace().next() == Some("listener"))
        .count();
    let conf = dir.path().join("midge.conf");
    std::fs::write(&conf, config).expect("write midge.conf");
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + START_WAIT;
    let mut addrs = Vec::with_capacity(listeners);
    while addrs.len() < listeners {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            let _ = child.kill();
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            panic!("{bin} did not start within {START_WAIT:?}: {err}")
        });
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line from {bin}: {line}"));
        addrs.push(addr);
    }
    // The daemon reads its configuration only at start (and on SIGHUP, which the suite does
    // not send): the directory can go now rather than outlive the test process.
    drop(dir);
    Target {
        addrs,
        daemon: Some(child),
    }
}
