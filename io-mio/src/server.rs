//! The event loop: one thread, one mio `Poll`, every socket non-blocking. It accepts connections,
//! moves bytes between sockets and the broker, and carries out the broker's actions. All MQTT
//! decisions are the broker's; this loop only keeps the I/O rules:
//!
//! - read each ready socket until it would block, within a per-turn budget so one busy client
//!   cannot starve the others (the rest is read on the next turn);
//! - hand the broker's output for a connection to the socket in one write per turn, keeping what
//!   the socket does not take, and tell the broker the connection is blocked until it drains;
//! - a connection enters the broker only once its TLS and WebSocket handshakes are done (so the
//!   broker knows its certificate identity); handshakes that never finish are dropped;
//! - accept errors such as running out of file descriptors pause accepting briefly instead of
//!   spinning;
//! - with persistence, the broker's records go to the storage's writer thread (a channel send,
//!   never a wait), and the writer's wake-up (a mio `Waker`) brings the durable LSN back to the
//!   broker, which then releases the output that waited for it;
//! - a bridge's connection is dialed when the broker asks (`Action::Dial`): host names are
//!   resolved on a resolver thread that wakes the loop through the same `Waker`, the connect
//!   and the TLS handshake run like any other non-blocking I/O, and only a connection ready for
//!   MQTT reaches the broker (`Input::Dialed`); any failure, or taking longer than the handshake
//!   timeout, is `Input::DialFailed`. Bridge connections count against no listener's
//!   `max_connections`.

use crate::clock::Clock;
use crate::dial::{self, Dialing, Lookup, Resolver};
use crate::signals::{Signal, Signals};
use crate::storage::{self, Recovered, Storage};
use crate::transport::{RawStream, Transport};
use bytes::Bytes;
use midge_core::auth::{Authenticator, Authorizer};
use midge_core::broker::bridge::BridgeId;
use midge_core::broker::{Action, Broker, ConnId, Input, ListenerId, Open, Time};
use midge_core::codec::ByteString;
use midge_core::persist::Lsn;
use mio::net::TcpListener;
#[cfg(unix)]
use mio::net::UnixListener;
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::ServerConfig;
use slab::Slab;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::dial::BridgeSpec;

/// Unix signals (SIGHUP, SIGINT, SIGTERM).
#[cfg(unix)]
const SIGNALS: Token = Token(0);
/// Wake-ups from other threads: the storage writer (more of the log is durable), the resolver
/// (a bridge's host name resolved) and, on Windows, the console event handler. mio allows one
/// `Waker` per `Poll`; they share it.
const WAKER: Token = Token(1);
/// Listener tokens are 2..2+listeners; connection tokens follow.
const FIRST_LISTENER: usize = 2;

/// Where a listener listens.
#[derive(Debug, Clone)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    /// A Unix domain socket (Unix only: configuration refuses one elsewhere).
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

/// One listening socket, as configuration describes it.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub id: ListenerId,
    pub addr: ListenAddr,
    pub tls: Option<Arc<ServerConfig>>,
    pub websocket: bool,
    /// Connections this listener accepts at once (Mosquitto's per-listener max_connections).
    pub max_connections: Option<usize>,
}

/// Limits of the I/O layer.
#[derive(Debug, Clone)]
pub struct IoLimits {
    /// Bytes read from one connection per loop turn.
    pub read_budget: usize,
    /// Time a connection has to finish its TLS and WebSocket handshakes.
    pub handshake_timeout: Duration,
    /// Largest WebSocket message accepted.
    pub max_ws_message: usize,
    /// Bytes of WebSocket frames that may wait to be written.
    pub max_ws_buffer: usize,
    /// Time a closing connection may take to flush its last bytes.
    pub close_linger: Duration,
    /// Time shutting down may take before the connections still open are dropped (their
    /// last output may be waiting for a log write that does not succeed).
    pub shutdown_grace: Duration,
}

impl Default for IoLimits {
    fn default() -> IoLimits {
        IoLimits {
            read_budget: 256 * 1024,
            handshake_timeout: Duration::from_secs(10),
            max_ws_message: 268_435_460,
            max_ws_buffer: 16 << 20,
            close_linger: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

enum Socket {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(UnixListener),
}

struct Listener {
    spec: ListenerSpec,
    socket: Socket,
    /// Connections open now.
    open: usize,
    /// Accepting is paused until then after an error such as EMFILE.
    paused_until: Option<Instant>,
    local: String,
}

/// Where a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Accepted by the listener at this index (u32 keeps `Conn` small: see its size test).
    Listener(u32),
    /// Dialed for a bridge.
    Bridge(BridgeId),
}

struct Conn {
    transport: Transport,
    origin: Origin,
    phase: Phase,
    /// Output the socket has not taken yet; no allocation once it is all written.
    out: Vec<Bytes>,
    /// The broker was told the connection is blocked.
    blocked: bool,
    /// The broker asked not to read this connection.
    read_paused: bool,
    /// Input remains to be read (the read budget ran out).
    more_input: bool,
    /// An event said the peer shut its side down: read to the end of the stream, since a short
    /// read no longer shows that nothing is left (the end may wait behind the data, with no
    /// further event to announce it).
    peer_shut: bool,
}

/// Where a connection is in its life. Each phase keeps only what it needs, so that the many
/// open, idle connections stay small.
enum Phase {
    /// A bridge's TCP connect, TLS or WebSocket handshakes under way: the broker does not know
    /// the connection yet.
    Handshake(Box<Handshake>),
    /// The broker knows the connection.
    Open,
    /// The broker closed the connection: flush `out`, then drop it by this deadline.
    Closing(Instant),
}

struct Handshake {
    accepted: Instant,
    /// Handed to the broker when the connection opens in it.
    peer: Option<SocketAddr>,
    /// A bridge's connection that is not up yet. Boxed: accepted connections, the many, do
    /// not pay for it.
    dial: Option<Box<Dialing>>,
}

impl Conn {
    /// A connection the broker does not know yet.
    fn new(
        transport: Transport,
        origin: Origin,
        peer: Option<SocketAddr>,
        accepted: Instant,
    ) -> Conn {
        Conn {
            transport,
            origin,
            phase: Phase::Handshake(Box::new(Handshake {
                accepted,
                peer,
                dial: None,
            })),
            out: Vec::new(),
            blocked: false,
            read_paused: false,
            more_input: false,
            peer_shut: false,
        }
    }

    /// The broker knows this connection (handshakes done).
    fn opened(&self) -> bool {
        !matches!(self.phase, Phase::Handshake(_))
    }

    fn closing(&self) -> bool {
        matches!(self.phase, Phase::Closing(_))
    }

    /// The dial of a bridge's connection that is not up yet.
    fn dial(&self) -> Option<&Dialing> {
        match &self.phase {
            Phase::Handshake(h) => h.dial.as_deref(),
            _ => None,
        }
    }

    fn dial_mut(&mut self) -> Option<&mut Dialing> {
        match &mut self.phase {
            Phase::Handshake(h) => h.dial.as_deref_mut(),
            _ => None,
        }
    }

    fn take_dial(&mut self) -> Option<Box<Dialing>> {
        match &mut self.phase {
            Phase::Handshake(h) => h.dial.take(),
            _ => None,
        }
    }
}

/// Re-reads credentials and rules on SIGHUP: the authorizer, and the authenticator of MQTT 5
/// enhanced authentication.
pub type Reload<'a> =
    dyn FnMut() -> Result<(Box<dyn Authorizer>, Box<dyn Authenticator>), String> + 'a;

/// The daemon's event loop around a broker.
pub struct Server {
    poll: Poll,
    listeners: Vec<Listener>,
    conns: Slab<Conn>,
    broker: Broker,
    limits: IoLimits,
    clock: Clock,
    scratch: Vec<u8>,
    inbox: Vec<u8>,
    /// Connections with output or state to act on this turn.
    dirty: Vec<usize>,
    /// Connections that may have input left to read (`Conn::more_input`), so that a turn does
    /// not walk every connection to find them: with many idle connections that walk cost more
    /// than the work. May hold keys whose flag was cleared since, or reused keys.
    more_input: Vec<usize>,
    /// Connections with a deadline the sweep checks: still in their handshake, or closing.
    /// May hold stale keys; the sweep prunes them.
    watched: Vec<usize>,
    shutting_down: bool,
    /// When shutting down gives up on connections that do not close.
    shutdown_deadline: Option<Instant>,
    /// The persistence log, when persistence is on, and the last durable LSN the broker heard.
    storage: Option<Storage>,
    durable: Lsn,
    /// Shared by the storage writer and the resolver.
    waker: Arc<Waker>,
    /// The bridges the broker may ask to dial, by [`BridgeId`].
    bridges: Vec<BridgeSpec>,
    /// Started at the first dial of a bridge named by host name.
    resolver: Option<Resolver>,
    /// Bridges waiting for their host name to resolve; at most one per bridge.
    lookups: Vec<Lookup>,
    next_lookup: u64,
}

impl Server {
    /// Binds every listener. Nothing is accepted before [`Server::run`].
    /// Binds the listeners. `clock` must be the clock the broker's earlier inputs (its
    /// recovery) were timed by.
    pub fn bind(
        specs: Vec<ListenerSpec>,
        broker: Broker,
        limits: IoLimits,
        clock: Clock,
    ) -> io::Result<Server> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listeners = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let token = Token(FIRST_LISTENER + i);
            let (socket, local) = match &spec.addr {
                ListenAddr::Tcp(addr) => {
                    let mut l = TcpListener::bind(*addr).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                    })?;
                    poll.registry()
                        .register(&mut l, token, Interest::READABLE)?;
                    let local = l.local_addr()?.to_string();
                    (Socket::Tcp(l), local)
                }
                #[cfg(unix)]
                ListenAddr::Unix(path) => {
                    remove_stale_socket(path);
                    let mut l = UnixListener::bind(path).map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("cannot listen on {}: {e}", path.display()),
                        )
                    })?;
                    poll.registry()
                        .register(&mut l, token, Interest::READABLE)?;
                    (Socket::Unix(l), path.display().to_string())
                }
            };
            let kind = match (spec.tls.is_some(), spec.websocket) {
                (false, false) => "mqtt",
                (true, false) => "mqtt+tls",
                (false, true) => "websockets",
                (true, true) => "websockets+tls",
            };
            tracing::info!("listening on {local} ({kind})");
            listeners.push(Listener {
                spec,
                socket,
                open: 0,
                paused_until: None,
                local,
            });
        }
        Ok(Server {
            poll,
            listeners,
            conns: Slab::new(),
            broker,
            limits,
            clock,
            scratch: vec![0; 64 * 1024],
            inbox: Vec::new(),
            dirty: Vec::new(),
            more_input: Vec::new(),
            watched: Vec::new(),
            shutting_down: false,
            shutdown_deadline: None,
            storage: None,
            durable: 0,
            waker,
            bridges: Vec::new(),
            resolver: None,
            lookups: Vec::new(),
            next_lookup: 0,
        })
    }

    /// The bridges the broker's configuration names, in its order: `Action::Dial` asks for
    /// them by index. Set before [`Server::run`].
    pub fn set_bridges(&mut self, bridges: Vec<BridgeSpec>) {
        self.bridges = bridges;
    }

    /// Starts writing the broker's records after the log `recovered` read (the broker must
    /// have been built from `recovered.state`).
    pub fn start_storage(
        &mut self,
        recovered: Recovered,
        options: &storage::Options,
    ) -> io::Result<()> {
        let waker = Arc::clone(&self.waker);
        self.durable = recovered.state.last_lsn();
        let notify = Box::new(move || {
            if let Err(e) = waker.wake() {
                tracing::error!("cannot wake the event loop: {e}");
            }
        });
        self.storage = Some(Storage::start(recovered, options, notify)?);
        Ok(())
    }

    /// The storage's counters, when persistence is on.
    pub fn storage_stats(&self) -> Option<storage::Stats> {
        self.storage.as_ref().map(Storage::stats)
    }

    /// The addresses the listeners are bound to, in configuration order.
    pub fn local_addrs(&self) -> Vec<String> {
        self.listeners.iter().map(|l| l.local.clone()).collect()
    }

    fn now(&self) -> Time {
        self.clock.now()
    }

    /// Runs until SIGINT or SIGTERM (on Windows: Ctrl-C, Ctrl-Break or the console closing).
    /// SIGHUP calls `reload` and installs the authorizer it returns, keeping every connection;
    /// Windows has no such signal, and `reload` is not called there (see `signals`).
    pub fn run(
        &mut self,
        #[cfg_attr(windows, expect(unused_variables, reason = "no reload on Windows"))]
        reload: &mut Reload<'_>,
    ) -> io::Result<()> {
        #[cfg(unix)]
        let mut signals = Signals::register(self.poll.registry(), SIGNALS)?;
        #[cfg(windows)]
        let mut signals = Signals::install(&self.waker)?;
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {
                        self.log_durable();
                        self.resolved();
                        #[cfg(windows)]
                        for signal in signals.pending() {
                            match signal {
                                Signal::Shutdown => self.begin_shutdown(),
                            }
                        }
                    }
                    #[cfg(unix)]
                    SIGNALS => {
                        for signal in signals.pending() {
                            match signal {
                                Signal::Reload => self.reload(reload),
                                Signal::Shutdown => self.begin_shutdown(),
                            }
                        }
                    }
                    Token(t) if t < FIRST_LISTENER + self.listeners.len() => {
                        self.accept(t - FIRST_LISTENER);
                    }
                    Token(t) => {
                        let key = t - FIRST_LISTENER - self.listeners.len();
                        if event.is_read_closed()
                            && let Some(c) = self.conns.get_mut(key)
                        {
                            c.peer_shut = true;
                        }
                        if self
                            .conns
                            .get(key)
                            .is_some_and(|c| c.dial().is_some_and(|d| d.connecting))
                        {
                            self.connect_event(key);
                            continue;
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(key);
                        }
                        if event.is_writable() && self.conns.contains(key) {
                            self.dirty.push(key);
                        }
                    }
                }
            }
            self.turn_end();
            if self.shutting_down {
                if !self.conns.is_empty()
                    && self.shutdown_deadline.is_some_and(|t| t <= Instant::now())
                {
                    tracing::warn!(
                        "{} connections did not close within {:?}; dropping them",
                        self.conns.len(),
                        self.limits.shutdown_grace
                    );
                    let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    for key in keys {
                        self.drop_connection(key, false);
                    }
                }
                if self.conns.is_empty() {
                    self.close_storage();
                    tracing::info!("shut down");
                    return Ok(());
                }
            }
        }
    }

    /// Tells the broker how far the log is durable; output that waited for it goes out.
    fn log_durable(&mut self) {
        let Some(storage) = &self.storage else {
            return;
        };
        let lsn = storage.durable();
        if lsn > self.durable {
            self.durable = lsn;
            let now = self.now();
            self.broker.handle(now, Input::Durable { lsn });
            self.apply_actions();
        }
    }

    /// Writes and fsyncs what remains of the log, and stops its threads.
    fn close_storage(&mut self) {
        if let Some(storage) = self.storage.take() {
            let stats = storage.close();
            tracing::info!(
                "persistence log closed at LSN {}: {} batches, {} bytes, {} fsyncs, {} snapshots",
                stats.durable,
                stats.batches,
                stats.bytes,
                stats.fsyncs,
                stats.snapshots
            );
        }
    }

    /// How long poll may sleep: until the broker's next deadline, a paused listener, or the
    /// next check of handshakes and lingering closes.
    fn poll_timeout(&self) -> Option<Duration> {
        if self
            .more_input
            .iter()
            .any(|k| self.conns.get(*k).is_some_and(|c| c.more_input))
        {
            return Some(Duration::ZERO);
        }
        let mut timeout = Duration::from_secs(1);
        if let Some(t) = self.broker.poll_timeout() {
            let now = self.now().as_millis();
            timeout = timeout.min(Duration::from_millis(t.as_millis().saturating_sub(now)));
        }
        if self.listeners.iter().any(|l| l.paused_until.is_some()) {
            timeout = timeout.min(Duration::from_millis(100));
        }
        Some(timeout)
    }

    /// Work at the end of every turn: time, leftover input, output, and housekeeping.
    fn turn_end(&mut self) {
        let mut pending = std::mem::take(&mut self.more_input);
        pending.sort_unstable();
        pending.dedup();
        for key in pending {
            if self.conns.get(key).is_some_and(|c| c.more_input) {
                self.read(key);
            }
        }
        let now = self.now();
        self.broker.handle(now, Input::Tick);
        self.apply_actions();
        self.flush();
        self.sweep();
        for i in 0..self.listeners.len() {
            if self.listeners[i]
                .paused_until
                .is_some_and(|t| t <= Instant::now())
            {
                self.listeners[i].paused_until = None;
                self.accept(i);
            }
        }
    }

    fn accept(&mut self, index: usize) {
        if self.shutting_down || self.listeners[index].paused_until.is_some() {
            return;
        }
        loop {
            let listener = &self.listeners[index];
            let accepted = match &listener.socket {
                Socket::Tcp(l) => l.accept().map(|(s, peer)| (RawStream::Tcp(s), Some(peer))),
                #[cfg(unix)]
                Socket::Unix(l) => l.accept().map(|(s, _)| (RawStream::Unix(s), None)),
            };
            match accepted {
                Ok((stream, peer)) => self.add_connection(index, stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS...: the pending connection stays in the backlog;
                    // try again shortly rather than spinning on an accept that keeps failing.
                    tracing::error!(listener = %self.listeners[index].local, error = %e, "accept failed, pausing accepts for 100 ms");
                    self.listeners[index].paused_until =
                        Some(Instant::now() + Duration::from_millis(100));
                    return;
                }
            }
        }
    }

    fn add_connection(&mut self, index: usize, raw: RawStream, peer: Option<SocketAddr>) {
        let listener = &mut self.listeners[index];
        if listener
            .spec
            .max_connections
            .is_some_and(|max| listener.open >= max)
        {
            tracing::warn!(listener = %listener.local, ?peer, "listener max_connections reached, refusing");
            return;
        }
        if let RawStream::Tcp(s) = &raw {
            let _ = s.set_nodelay(true);
        }
        let raw = match (&listener.spec.tls, raw) {
            (Some(config), RawStream::Tcp(sock)) => {
                match rustls::ServerConnection::new(Arc::clone(config)) {
                    Ok(tls) => RawStream::Tls(Box::new(rustls::StreamOwned::new(tls, sock))),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start TLS");
                        return;
                    }
                }
            }
            (_, raw) => raw,
        };
        let transport = if listener.spec.websocket {
            Transport::websocket(raw, self.limits.max_ws_message, self.limits.max_ws_buffer)
        } else {
            Transport::mqtt(raw)
        };
        listener.open += 1;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let token = Token(FIRST_LISTENER + self.listeners.len() + key);
        let mut conn = Conn::new(
            transport,
            Origin::Listener(index as u32),
            peer,
            Instant::now(),
        );
        let registered = match conn.transport.raw_mut() {
            Some(raw) => register(&self.poll, raw, token),
            None => Err(io::ErrorKind::NotConnected.into()),
        };
        if let Err(e) = registered {
            tracing::error!(error = %e, "cannot register connection");
            self.listeners[index].open -= 1;
            return;
        }
        tracing::debug!(?peer, listener = %self.listeners[index].local, "new connection");
        entry.insert(conn);
        self.watched.push(key);
        // The handshake may already have data waiting.
        self.read(key);
    }

    /// Reads what a connection has, opening it in the broker once its handshakes are done.
    fn read(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.more_input = false;
        if conn.read_paused || conn.closing() {
            return;
        }
        self.inbox.clear();
        let inbox = &mut self.inbox;
        let outcome = conn.transport.read(
            &mut self.scratch,
            self.limits.read_budget,
            conn.peer_shut,
            |bytes| inbox.extend_from_slice(bytes),
        );
        conn.more_input = outcome.more;
        if outcome.more {
            self.more_input.push(key);
        }
        // A handshake may have answers to send even when no MQTT bytes arrived.
        self.dirty.push(key);
        if !conn.opened() && conn.transport.ready() {
            self.open_in_broker(key);
        }
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.opened() && !self.inbox.is_empty() {
            let now = self.now();
            let bytes = std::mem::take(&mut self.inbox);
            self.broker.handle(
                now,
                Input::Received {
                    conn: ConnId(key as u64),
                    bytes: &bytes,
                },
            );
            self.inbox = bytes;
            self.apply_actions();
        }
        if outcome.closed {
            match &outcome.error {
                Some(e) => tracing::debug!(conn = key, error = %e, "connection failed"),
                None => tracing::debug!(conn = key, "connection closed by peer"),
            }
            if let Some(dial) = self.conns.get_mut(key).and_then(Conn::dial_mut) {
                dial.error = Some(outcome.error.unwrap_or_else(|| {
                    "the remote closed the connection during the TLS handshake".to_owned()
                }));
            }
            self.drop_connection(key, true);
        }
    }

    fn open_in_broker(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Phase::Handshake(handshake) = std::mem::replace(&mut conn.phase, Phase::Open) else {
            return;
        };
        let listener = match conn.origin {
            Origin::Listener(index) => index as usize,
            Origin::Bridge(bridge) => {
                let target = handshake.dial.map(|d| d.target).unwrap_or_default();
                let name = self.bridge_name(bridge);
                tracing::info!(bridge = %name, address = %target, "bridge connected");
                let now = self.now();
                self.broker.handle(
                    now,
                    Input::Dialed {
                        bridge,
                        conn: ConnId(key as u64),
                    },
                );
                self.apply_actions();
                return;
            }
        };
        let identity = conn
            .transport
            .raw()
            .and_then(RawStream::peer_identity)
            .map(ByteString::from);
        let open = Open {
            conn: ConnId(key as u64),
            listener: self.listeners[listener].spec.id,
            peer: handshake.peer,
            tls_identity: identity,
        };
        let now = self.now();
        self.broker.handle(now, Input::Open(open));
        self.apply_actions();
    }

    /// Carries out everything the broker asks for.
    fn apply_actions(&mut self) {
        while let Some(action) = self.broker.poll_action() {
            match action {
                Action::Send { conn, bytes } => {
                    let key = conn.0 as usize;
                    if let Some(c) = self.conns.get_mut(key) {
                        c.out.push(bytes);
                        self.dirty.push(key);
                    }
                }
                Action::Close { conn } => {
                    let key = conn.0 as usize;
                    if let Some(c) = self.conns.get_mut(key) {
                        c.phase = Phase::Closing(Instant::now() + self.limits.close_linger);
                        self.watched.push(key);
                        self.dirty.push(key);
                    }
                }
                Action::Persist { lsn, bytes } => match &self.storage {
                    Some(storage) => storage.append(lsn, bytes),
                    // Persistence on without storage is a bug of the caller; never report
                    // such records durable.
                    None => {
                        tracing::error!(lsn, "records emitted but the daemon has no log; ignored");
                    }
                },
                Action::Dial { bridge, address } => self.dial(bridge, address),
                Action::PauseRead { conn } => {
                    if let Some(c) = self.conns.get_mut(conn.0 as usize) {
                        c.read_paused = true;
                    }
                }
                Action::ResumeRead { conn } => {
                    let key = conn.0 as usize;
                    if let Some(c) = self.conns.get_mut(key) {
                        c.read_paused = false;
                        // Input that arrived while paused raised no new readiness event.
                        c.more_input = true;
                        self.more_input.push(key);
                    }
                }
            }
        }
    }

    /// Writes pending output of every connection that has some or became writable.
    fn flush(&mut self) {
        while !self.dirty.is_empty() {
            let mut keys = std::mem::take(&mut self.dirty);
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                self.write(key);
            }
            // Telling the broker a connection drained may produce more output.
            self.apply_actions();
        }
    }

    fn write(&mut self, key: usize) {
        let now = self.now();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let result = if conn.out.is_empty() {
            conn.transport.flush_pending()
        } else {
            conn.transport.write(&mut conn.out)
        };
        match result {
            Ok(waiting) => {
                if conn.out.is_empty() {
                    // Idle connections keep no output allocation.
                    conn.out = Vec::new();
                }
                if conn.closing() {
                    if !waiting && conn.out.is_empty() {
                        self.drop_connection(key, false);
                    }
                    return;
                }
                let waiting = waiting || !conn.out.is_empty();
                if conn.opened() && waiting != conn.blocked {
                    conn.blocked = waiting;
                    let id = ConnId(key as u64);
                    let input = if waiting {
                        Input::Blocked { conn: id }
                    } else {
                        Input::Writable { conn: id }
                    };
                    self.broker.handle(now, input);
                }
                if !conn.opened() && conn.transport.ready() {
                    self.open_in_broker(key);
                }
            }
            Err(e) => {
                tracing::debug!(conn = key, error = %e, "write failed");
                let told_broker = !conn.closing();
                self.drop_connection(key, told_broker);
            }
        }
    }

    /// Forgets a connection; tells the broker when it did not close it itself.
    fn drop_connection(&mut self, key: usize, tell_broker: bool) {
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        if let Some(raw) = conn.transport.raw_mut() {
            deregister(&self.poll, raw);
        }
        conn.transport.close();
        match conn.origin {
            Origin::Listener(index) => self.listeners[index as usize].open -= 1,
            Origin::Bridge(bridge) if !conn.opened() => {
                // The broker only knows it asked for a dial: this is its answer.
                let (target, why) = conn.take_dial().map_or_else(Default::default, |d| {
                    let why = d.error.unwrap_or_else(|| {
                        "the connection or its TLS handshake did not finish in time".to_owned()
                    });
                    (d.target, why)
                });
                self.dial_failed(bridge, &target, &why);
                return;
            }
            Origin::Bridge(bridge) => {
                let name = self.bridge_name(bridge);
                tracing::info!(bridge = %name, conn = key, "bridge connection closed");
            }
        }
        if tell_broker && conn.opened() && !conn.closing() {
            let now = self.now();
            self.broker.handle(
                now,
                Input::Closed {
                    conn: ConnId(key as u64),
                },
            );
            self.apply_actions();
        }
    }

    /// Drops handshakes that take too long and closing connections that cannot flush.
    fn sweep(&mut self) {
        let now = Instant::now();
        // Only connections in their handshake or closing have a deadline; the others leave
        // the list (a closing one comes back when it starts closing).
        let mut watched = std::mem::take(&mut self.watched);
        watched.sort_unstable();
        watched.dedup();
        let mut expired = Vec::new();
        watched.retain(|&key| {
            let Some(c) = self.conns.get(key) else {
                return false;
            };
            let expired_at = match &c.phase {
                Phase::Open => return false,
                Phase::Closing(until) => *until <= now,
                Phase::Handshake(h) => now - h.accepted > self.limits.handshake_timeout,
            };
            if expired_at {
                expired.push(key);
                return false;
            }
            true
        });
        self.watched = watched;
        let timeout = self.limits.handshake_timeout;
        let (late, waiting): (Vec<Lookup>, Vec<Lookup>) = std::mem::take(&mut self.lookups)
            .into_iter()
            .partition(|l| now - l.started > timeout);
        self.lookups = waiting;
        for lookup in late {
            let target = format!("{}:{}", lookup.host, lookup.port);
            self.dial_failed(lookup.bridge, &target, "the name did not resolve in time");
        }
        for key in expired {
            tracing::debug!(
                conn = key,
                "dropping connection (handshake or close timed out)"
            );
            self.drop_connection(key, false);
        }
        // Failed dials have the broker's answer (a retry timer, say) waiting.
        self.apply_actions();
    }

    #[cfg(unix)]
    fn reload(&mut self, reload: &mut Reload<'_>) {
        match reload() {
            Ok((authorizer, authenticator)) => {
                self.broker.set_authorizer(authorizer);
                self.broker.set_authenticator(authenticator);
                tracing::info!("reloaded password and ACL files");
            }
            Err(e) => tracing::error!("reload failed, keeping the previous rules: {e}"),
        }
    }

    /// Stops accepting and closes every connection; `run` returns once they are gone.
    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        tracing::info!("shutting down");
        self.shutting_down = true;
        self.shutdown_deadline = Some(Instant::now() + self.limits.shutdown_grace);
        for listener in &mut self.listeners {
            match &mut listener.socket {
                Socket::Tcp(l) => {
                    let _ = self.poll.registry().deregister(l);
                }
                #[cfg(unix)]
                Socket::Unix(l) => {
                    let _ = self.poll.registry().deregister(l);
                }
            }
        }
        let now = self.now();
        self.broker.handle(now, Input::Shutdown);
        self.apply_actions();
        // Dials not finished are abandoned; the broker is going down and does not redial.
        self.lookups.clear();
        // Connections the broker never heard of (mid-handshake) just go.
        let unopened: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.opened())
            .map(|(k, _)| k)
            .collect();
        for key in unopened {
            self.drop_connection(key, false);
        }
    }

    // --- Bridges ---------------------------------------------------------------------------

    fn bridge_name(&self, bridge: BridgeId) -> &str {
        self.bridges
            .get(bridge.0 as usize)
            .map_or("?", |spec| spec.name.as_str())
    }

    /// Tells the broker a dial failed. The caller applies the broker's actions (this may run
    /// while they are being applied).
    fn dial_failed(&mut self, bridge: BridgeId, target: &str, why: &str) {
        if self.shutting_down {
            return;
        }
        let name = self.bridge_name(bridge);
        tracing::warn!(bridge = %name, address = %target, "bridge cannot connect: {why}");
        let now = self.now();
        self.broker.handle(now, Input::DialFailed { bridge });
    }

    /// `Action::Dial`: connect to `addresses[address]` of the bridge. An IP address is
    /// connected to at once; a host name goes to the resolver first.
    fn dial(&mut self, bridge: BridgeId, address: usize) {
        if self.shutting_down {
            return;
        }
        let Some(remote) = self
            .bridges
            .get(bridge.0 as usize)
            .and_then(|spec| spec.addresses.get(address))
            .cloned()
        else {
            tracing::error!(
                ?bridge,
                address,
                "dial of an unknown bridge address; refused"
            );
            self.dial_failed(bridge, "?", "no such bridge address");
            return;
        };
        // A bridge has one dial at a time: a new request replaces one still under way.
        self.lookups.retain(|l| l.bridge != bridge);
        let stale: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.origin == Origin::Bridge(bridge) && !c.opened())
            .map(|(k, _)| k)
            .collect();
        for key in stale {
            self.forget(key);
        }
        let target = dial::display(&remote);
        tracing::debug!(bridge = %self.bridge_name(bridge), address = %target, "dialing");
        if let Some(addr) = dial::literal(&remote) {
            self.connect(
                bridge,
                target,
                remote.host,
                VecDeque::from([addr]),
                Instant::now(),
            );
            return;
        }
        if self.resolver.is_none() {
            match Resolver::start(Arc::clone(&self.waker)) {
                Ok(resolver) => self.resolver = Some(resolver),
                Err(e) => {
                    self.dial_failed(bridge, &target, &format!("cannot start the resolver: {e}"));
                    return;
                }
            }
        }
        let id = self.next_lookup;
        self.next_lookup += 1;
        // Lookups a hung resolver has not answered stay queued; past a few per bridge, dials
        // fail at once instead of queueing more behind them.
        let limit = 4 * self.bridges.len().max(1);
        let Some(resolver) = self.resolver.as_mut() else {
            return;
        };
        if resolver.outstanding >= limit || !resolver.resolve(id, &remote.host, remote.port) {
            self.dial_failed(bridge, &target, "the resolver is not answering");
            return;
        }
        self.lookups.push(Lookup {
            id,
            bridge,
            host: remote.host,
            port: remote.port,
            started: Instant::now(),
        });
    }

    /// Answers from the resolver: each still awaited either starts connecting or fails.
    fn resolved(&mut self) {
        let Some(resolver) = self.resolver.as_mut() else {
            return;
        };
        for answer in resolver.answers() {
            let Some(at) = self.lookups.iter().position(|l| l.id == answer.id) else {
                // Timed out, replaced, or shutting down.
                continue;
            };
            let lookup = self.lookups.swap_remove(at);
            let target = dial::display(&midge_core::broker::bridge::BridgeAddress {
                host: lookup.host.clone(),
                port: lookup.port,
            });
            match answer.result {
                Ok(addrs) => {
                    self.connect(lookup.bridge, target, lookup.host, addrs, lookup.started)
                }
                Err(e) => self.dial_failed(lookup.bridge, &target, &format!("cannot resolve: {e}")),
            }
        }
        self.apply_actions();
    }

    /// Starts a non-blocking connect to the first of `addrs` that takes one; the rest are
    /// tried if it fails.
    fn connect(
        &mut self,
        bridge: BridgeId,
        target: String,
        host: String,
        mut addrs: VecDeque<SocketAddr>,
        started: Instant,
    ) {
        let mut why = "no address to connect to".to_owned();
        while let Some(addr) = addrs.pop_front() {
            let stream = match mio::net::TcpStream::connect(addr) {
                Ok(stream) => stream,
                Err(e) => {
                    why = format!("{addr}: {e}");
                    continue;
                }
            };
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            let token = Token(FIRST_LISTENER + self.listeners.len() + key);
            let mut raw = RawStream::Tcp(stream);
            if let Err(e) = register(&self.poll, &mut raw, token) {
                why = format!("{addr}: cannot register the socket: {e}");
                continue;
            }
            let mut conn = Conn::new(
                Transport::mqtt(raw),
                Origin::Bridge(bridge),
                Some(addr),
                started,
            );
            if let Phase::Handshake(h) = &mut conn.phase {
                h.dial = Some(Box::new(Dialing {
                    target,
                    host,
                    connecting: true,
                    addr,
                    fallback: addrs,
                    started,
                    error: None,
                }));
            }
            entry.insert(conn);
            // The sweep fails the dial if it outlasts the handshake timeout.
            self.watched.push(key);
            return;
        }
        self.dial_failed(bridge, &target, &why);
    }

    /// The socket of a connecting bridge connection woke: connected, failed, or not yet.
    fn connect_event(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let outcome = match conn.transport.raw() {
            Some(RawStream::Tcp(stream)) => dial::connect_outcome(stream),
            _ => Err(io::ErrorKind::NotConnected.into()),
        };
        match outcome {
            Ok(false) => {}
            Ok(true) => self.connected(key),
            Err(e) => {
                // Try the name's next address, within the same deadline.
                let Origin::Bridge(bridge) = conn.origin else {
                    return;
                };
                let dial = conn.take_dial();
                self.forget(key);
                if let Some(d) = dial {
                    let why = format!("{}: {e}", d.addr);
                    if d.fallback.is_empty() {
                        self.dial_failed(bridge, &d.target, &why);
                    } else {
                        tracing::debug!(address = %d.target, "{why}; trying the next address");
                        self.connect(bridge, d.target, d.host, d.fallback, d.started);
                    }
                }
                self.apply_actions();
            }
        }
    }

    /// TCP is up: start TLS, or hand the connection to the broker.
    fn connected(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Origin::Bridge(bridge) = conn.origin else {
            return;
        };
        let Some(dial) = conn.dial_mut() else {
            return;
        };
        dial.connecting = false;
        let host = dial.host.clone();
        let tls = self
            .bridges
            .get(bridge.0 as usize)
            .and_then(|spec| spec.tls.clone());
        if let Some(RawStream::Tcp(stream)) = conn.transport.raw() {
            // As for accepted sockets: MQTT packets are small and latency matters.
            let _ = stream.set_nodelay(true);
        }
        let Some(config) = tls else {
            self.open_in_broker(key);
            return;
        };
        let server_name = rustls::pki_types::ServerName::try_from(host.clone());
        let transport = std::mem::replace(&mut conn.transport, Transport::Closed);
        let started = match (server_name, transport) {
            (Ok(name), Transport::Raw(RawStream::Tcp(sock))) => {
                rustls::ClientConnection::new(config, name)
                    .map(|tls| RawStream::TlsClient(Box::new(rustls::StreamOwned::new(tls, sock))))
                    .map_err(|e| e.to_string())
            }
            (Err(e), _) => Err(format!("{host} is not a TLS server name: {e}")),
            (Ok(_), _) => Err("the socket is gone".to_owned()),
        };
        match started {
            Ok(raw) => {
                conn.transport = Transport::mqtt(raw);
                // The ClientHello goes out with the next flush.
                self.dirty.push(key);
            }
            Err(e) => {
                if let Some(dial) = conn.dial_mut() {
                    dial.error = Some(format!("cannot start TLS: {e}"));
                }
                self.drop_connection(key, false);
                self.apply_actions();
            }
        }
    }

    /// Drops a bridge connection that is not up without telling the broker (it is being
    /// replaced, or another address is tried).
    fn forget(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            if let Some(raw) = conn.transport.raw_mut() {
                deregister(&self.poll, raw);
            }
            conn.transport.close();
        }
    }

    /// The broker, for inspection.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close_storage();
        #[cfg(unix)]
        for listener in &self.listeners {
            if let ListenAddr::Unix(path) = &listener.spec.addr {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn register(poll: &Poll, raw: &mut RawStream, token: Token) -> io::Result<()> {
    let interest = Interest::READABLE | Interest::WRITABLE;
    match raw {
        RawStream::Tcp(s) => poll.registry().register(s, token, interest),
        #[cfg(unix)]
        RawStream::Unix(s) => poll.registry().register(s, token, interest),
        RawStream::Tls(s) => poll.registry().register(&mut s.sock, token, interest),
        RawStream::TlsClient(s) => poll.registry().register(&mut s.sock, token, interest),
    }
}

fn deregister(poll: &Poll, raw: &mut RawStream) {
    let _ = match raw {
        RawStream::Tcp(s) => poll.registry().deregister(s),
        #[cfg(unix)]
        RawStream::Unix(s) => poll.registry().deregister(s),
        RawStream::Tls(s) => poll.registry().deregister(&mut s.sock),
        RawStream::TlsClient(s) => poll.registry().deregister(&mut s.sock),
    };
}

/// A Unix socket file left by a previous run would make bind fail; remove it, but never a file
/// that is not a socket.
#[cfg(unix)]
fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.local_addrs())
            .field("connections", &self.conns.len())
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::Conn;

    /// The event loop's share of an idle connection's memory (issue #11: 0.7 KiB in all, see
    /// BENCHMARKS.md): the handshake's details, a bridge's dial and a closing deadline live in
    /// `Phase`, boxed or gone while the connection is open, and the output Vec is freed once
    /// written.
    #[test]
    fn conn_stays_within_budget() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 80, "Conn is {size} bytes");
    }
}
