//! The broker: a deterministic, single-threaded, sans-IO MQTT state machine.
//!
//! A driver feeds it [`Input`]s (connections opened and closed, bytes received, back-pressure,
//! the passing of time), each with the current [`Time`], and carries out the [`Action`]s it
//! returns from [`Broker::poll_action`]: bytes to send and connections to close. It calls
//! [`Broker::handle`] with [`Input::Tick`] when [`Broker::poll_timeout`] says so. The broker does
//! its own framing, so bytes may arrive in any chunking.
//!
//! Nothing here depends on hash-map iteration order, clocks or unseeded randomness: the same
//! inputs produce the same actions, byte for byte.

mod authenticate;
pub mod bridge;
mod close;
mod config;
mod conn_table;
mod connect;
mod connection;
mod dispatch;
mod durable;
mod inflight_table;
mod message;
mod outbound;
mod outbox;
mod problem;
mod publish;
mod recover;
pub mod retained;
pub mod router;
mod session;
mod shared;
mod stats;
mod subscribe;
mod sys;
mod time;
mod timers;
mod topic_alias;

pub use config::Config;
pub use connect::CONNECTIONS;
pub use stats::Stats;
pub use time::Time;

use crate::auth::{Access, AllowAll, Authenticator, Authorizer, ClientRef};
use crate::codec::ByteString;
use bytes::Bytes;
use conn_table::ConnTable;
use connection::Connection;
use core::net::SocketAddr;
use message::Message;
use outbox::Outbox;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use retained::RetainedStore;
use router::Router;
use session::{Session, SessionKey};
use shared::SharedSubscriptions;
use slab::Slab;
use std::collections::BTreeMap;
use std::sync::Arc;
use subscribe::SubEntry;
use timers::{Timer, Timers};

/// A connection, named by the driver (a slab key or a counter). The broker never invents one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// The listener a connection arrived on, named by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ListenerId(pub u32);

/// A new network connection.
#[derive(Debug, Clone)]
pub struct Open {
    pub conn: ConnId,
    pub listener: ListenerId,
    /// The peer's address, when the transport has one.
    pub peer: Option<SocketAddr>,
    /// The identity of a verified TLS client certificate, when there is one.
    pub tls_identity: Option<ByteString>,
}

/// Something that happened, as the driver reports it.
#[derive(Debug, Clone)]
pub enum Input<'a> {
    /// A connection was accepted.
    Open(Open),
    /// Bytes arrived on a connection, in any chunking of the stream.
    Received { conn: ConnId, bytes: &'a [u8] },
    /// The connection was closed by the peer or failed. The broker forgets it without sending.
    Closed { conn: ConnId },
    /// The driver cannot write more to the connection for now: the broker keeps further output
    /// in its (bounded) buffers until `Writable`.
    Blocked { conn: ConnId },
    /// The connection can be written to again.
    Writable { conn: ConnId },
    /// The log is durable up to and including this LSN (see [`Action::Persist`]): output held
    /// for records up to it can go. Output waits for whole batches: a batch's records count
    /// once its `Commit`, the last of the batch, is durable.
    Durable { lsn: crate::persist::Lsn },
    /// The driver connected to the remote broker of a bridge, as asked by [`Action::Dial`]
    /// (TCP, and TLS when configured, are established): `conn` now names that connection, for
    /// `Received`, `Closed`, `Blocked` and `Writable` as for any other.
    Dialed {
        bridge: bridge::BridgeId,
        conn: ConnId,
    },
    /// The driver could not connect to the address asked for by [`Action::Dial`]: the name
    /// did not resolve, the connection was refused or timed out, or TLS failed.
    DialFailed { bridge: bridge::BridgeId },
    /// Only time passed.
    Tick,
    /// The server is going down: every connection is closed, MQTT 5 clients first receive
    /// DISCONNECT with reason 0x8B (Server shutting down). The broker accepts no new
    /// connections afterwards.
    Shutdown,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the connection, after any sent before.
    Send { conn: ConnId, bytes: Bytes },
    /// Close the connection once the bytes sent before are written. The broker has already
    /// forgotten it; a later `Closed` for it is ignored.
    Close { conn: ConnId },
    /// Stop reading from the connection: its client sends faster than it reads what the broker
    /// answers, and the answers have filled the connection's output limit. Bytes already read
    /// may still be passed in; they wait, undecoded, until `ResumeRead`.
    PauseRead { conn: ConnId },
    /// Read from the connection again.
    ResumeRead { conn: ConnId },
    /// Append these encoded records (LSNs up to `lsn`) to the log, after those before. Report
    /// with [`Input::Durable`] once they are durable: until then the broker holds back every
    /// output produced after them. The records are one batch, ended by a `Commit` at `lsn`:
    /// recovery ([`crate::persist::scan`]) takes a batch whole or not at all.
    Persist {
        lsn: crate::persist::Lsn,
        bytes: Bytes,
    },
    /// Connect to the remote broker of a bridge at `addresses[address]` of its
    /// [`bridge::BridgeConfig`], and answer with [`Input::Dialed`] or [`Input::DialFailed`].
    /// The driver brings the connection up to where MQTT bytes can flow (TLS included) and
    /// gives up after a timeout of its own.
    Dial {
        bridge: bridge::BridgeId,
        address: usize,
    },
}

/// The MQTT broker state machine.
#[derive(Debug)]
pub struct Broker {
    config: Config,
    now: Time,
    conns: ConnTable,
    sessions: Slab<Session>,
    /// Sessions by client id. The key is a copy of the id rather than a `ByteString` sharing
    /// the session's: 16 bytes instead of 32 in an entry, which B-tree nodes that are often only
    /// half full count almost twice.
    session_index: BTreeMap<Box<str>, SessionKey>,
    router: Router<SessionKey, SubEntry>,
    /// Shared subscriptions, by group.
    shared: SharedSubscriptions,
    retained: RetainedStore<Arc<Message>>,
    timers: Timers,
    outbox: Outbox,
    /// Generator of assigned client ids.
    rng: ChaCha20Rng,
    authorizer: Box<dyn Authorizer>,
    /// Enhanced authentication methods; none by default.
    authenticator: Option<Box<dyn Authenticator>>,
    stats: Stats,
    sys: sys::SysTree,
    /// Set by `Input::Shutdown`.
    shutting_down: bool,
    /// Connections owed a reply larger than their Maximum Packet Size: closed with DISCONNECT
    /// 0x95 once the input that caused it is handled (closing under the handler would end the
    /// session beneath it).
    reply_too_large: Vec<ConnId>,
    /// The LSN of the last record written.
    last_lsn: crate::persist::Lsn,
    /// Encoded records not yet handed to the driver.
    log: bytes::BytesMut,
    /// Last stored message id and delivery id given out.
    next_message_id: u64,
    next_delivery_id: u64,
    /// The state of each configured bridge, indexed by `BridgeId`.
    bridges: Vec<bridge::BridgeState>,
    /// The subscriptions a message being routed matches: kept empty between messages so that
    /// routing one does not allocate (see `publish::ROUTE_SCRATCH_KEEP`).
    route_scratch: Vec<(SessionKey, SubEntry)>,
}

impl Broker {
    /// A broker with no sessions. Each configured bridge sets up its local session and asks
    /// for its first [`Action::Dial`].
    pub fn new(config: Config) -> Broker {
        let mut b = Broker::empty(config);
        b.start_bridges();
        b
    }

    /// A broker with no sessions and no bridge started.
    fn empty(config: Config) -> Broker {
        let rng = ChaCha20Rng::from_seed(config.client_id_seed);
        Broker {
            config,
            now: Time::ZERO,
            conns: ConnTable::default(),
            sessions: Slab::new(),
            session_index: BTreeMap::new(),
            router: Router::new(),
            shared: SharedSubscriptions::default(),
            retained: RetainedStore::new(),
            timers: Timers::default(),
            outbox: Outbox::default(),
            rng,
            authorizer: Box::new(AllowAll),
            authenticator: None,
            stats: Stats::default(),
            sys: sys::SysTree::default(),
            shutting_down: false,
            reply_too_large: Vec::new(),
            last_lsn: 0,
            log: bytes::BytesMut::new(),
            next_message_id: 0,
            next_delivery_id: 0,
            bridges: Vec::new(),
            route_scratch: Vec::new(),
        }
    }

    /// Replaces the authorizer (by default everything is allowed). Connected clients keep
    /// their connection; their next publish, subscription and delivery are decided by the new
    /// one, which is how the daemon reloads password and ACL files.
    pub fn set_authorizer(&mut self, authorizer: Box<dyn Authorizer>) {
        self.authorizer = authorizer;
    }

    /// Sets the authenticator that offers MQTT 5 enhanced authentication methods (by default
    /// none is offered, and a CONNECT naming a method is refused with CONNACK 0x8C). Exchanges
    /// under way keep their state and finish with it; new ones use the new authenticator, which
    /// is how the daemon reloads credentials.
    pub fn set_authenticator(&mut self, authenticator: Box<dyn Authenticator>) {
        self.authenticator = Some(authenticator);
    }

    /// Asks the authorizer whether a session's client may publish, subscribe or receive on
    /// `topic`.
    fn allowed(&self, key: SessionKey, access: Access, topic: &str) -> bool {
        if !self.authorizer.checks_topics() {
            return true;
        }
        let session = &self.sessions[key];
        // A bridge is the broker's own link, configured by its operator: as in Mosquitto, no
        // ACL applies to what it forwards either way.
        if session.bridge.is_some() {
            return true;
        }
        let client = ClientRef {
            listener: session.listener,
            client_id: &session.client_id,
            username: session.username.as_deref(),
        };
        self.authorizer.authorize(&client, access, topic)
    }

    /// The client id of a session, for log lines.
    fn client_id(&self, key: SessionKey) -> &str {
        self.sessions.get(key).map_or("", |s| &s.client_id)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters of what the broker did and dropped.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Processes one input at time `now`. Time never runs backwards for the broker: an earlier
    /// `now` than the last one counts as the last one.
    pub fn handle(&mut self, now: Time, input: Input<'_>) {
        self.now = self.now.max(now);
        self.outbox.now = self.now;
        if !self.sys.is_started() {
            self.sys_start();
        }
        match input {
            Input::Open(open) => self.open(open),
            Input::Received { conn, bytes } => self.received(conn, bytes),
            Input::Closed { conn } => self.peer_closed(conn),
            Input::Blocked { conn } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.blocked = true;
                }
            }
            Input::Writable { conn } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    self.outbox.writable(conn, c);
                    let session = c.client().map(|client| client.session);
                    if c.read_paused {
                        c.read_paused = false;
                        self.outbox.push(Action::ResumeRead { conn });
                        // Packets that waited while reading was paused.
                        self.received(conn, &[]);
                    }
                    // QoS 0 messages that waited for the output to drain.
                    if let Some(key) = session
                        && self.sessions.contains(key)
                    {
                        self.pump(key);
                    }
                }
            }
            Input::Durable { lsn } => self.outbox.durable(lsn, &mut self.conns),
            Input::Dialed { bridge, conn } => self.bridge_dialed(bridge, conn),
            Input::DialFailed { bridge } => self.bridge_dial_failed(bridge),
            Input::Tick => {}
            Input::Shutdown => self.shutdown(),
        }
        self.close_reply_too_large();
        self.run_timers();
        // A reply a timer wrote may not fit either (a bridge's PINGREQ to a remote whose
        // Maximum Packet Size is 1): its connection closes now, not at some later input.
        if !self.reply_too_large.is_empty() {
            self.close_reply_too_large();
            self.run_timers();
        }
    }

    /// The next thing for the driver to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        // Records first: the driver can start writing them while it sends what is not held.
        if let Some(batch) = self.take_batch() {
            return Some(batch);
        }
        self.outbox.poll(&mut self.conns, &mut self.stats)
    }

    /// When the broker next needs [`Input::Tick`], if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    /// Closes every connection. Their wills are published: the server, not the client, ended
    /// the connection (5.0, 3.1.2.5).
    fn shutdown(&mut self) {
        self.shutting_down = true;
        self.shutdown_bridges();
        let ids: Vec<ConnId> = self.conns.ids().collect();
        for id in ids {
            self.close_conn(
                id,
                Some(crate::codec::DisconnectReason::ServerShuttingDown),
                close::WillAction::Publish,
            );
        }
    }

    fn open(&mut self, open: Open) {
        self.stats.connections_opened += 1;
        if self.conns.contains_key(&open.conn) {
            // The driver reused a live id: treat the old connection as gone.
            self.peer_closed(open.conn);
        }
        if self.shutting_down
            || self
                .config
                .max_connections
                .is_some_and(|max| self.conns.len() >= max)
        {
            self.stats.connections_refused += 1;
            tracing::warn!(
                conn = open.conn.0,
                "max_connections reached, closing new connection"
            );
            self.outbox.refuse(open.conn);
            return;
        }
        let mut conn = Connection::new(open.listener, open.peer, self.now);
        conn.tls_identity = open.tls_identity.map(|t| Box::from(&*t));
        self.conns.insert(open.conn, conn);
        self.stats.connections_open += 1;
        let deadline = self.now.plus_millis(self.config.connect_timeout_ms);
        self.timers
            .schedule(deadline, Timer::ConnectTimeout(open.conn));
    }

    /// Fires every timer that is due.
    fn run_timers(&mut self) {
        while let Some((at, timer)) = self.timers.pop_due(self.now) {
            match timer {
                Timer::ConnectTimeout(id) => {
                    let expired = self.conns.get(&id).is_some_and(|c| {
                        c.client().is_none()
                            && c.opened().is_some_and(|o| {
                                o.plus_millis(self.config.connect_timeout_ms) <= self.now
                            })
                    });
                    if expired {
                        tracing::debug!(conn = id.0, "no CONNECT in time, closing");
                        self.close_conn(id, None, close::WillAction::Discard);
                    }
                }
                Timer::KeepAlive(id) => self.keep_alive_due(id, at),
                Timer::SessionExpiry(key) => {
                    let due = self
                        .sessions
                        .get(key)
                        .is_some_and(|s| s.expires_at() == Some(at));
                    if due {
                        self.stats.sessions_expired += 1;
                        self.end_session(key);
                    }
                }
                Timer::Sys => self.sys_due(at),
                Timer::BridgePing(id) => self.bridge_ping_due(id),
                Timer::BridgeRedial(bridge) => self.bridge_redial_due(bridge, at),
                Timer::WillDelay(key) => {
                    let due = self.sessions.get(key).is_some_and(|s| {
                        s.conn().is_none()
                            && s.pending_will.as_deref().is_some_and(|(t, _)| *t == at)
                    });
                    if due && let Some(pending) = self.sessions[key].pending_will.take() {
                        let (_, will) = *pending;
                        self.record_will(key, None);
                        self.publish_will(will);
                    }
                }
            }
        }
    }

    /// A keep alive deadline passed: close the connection unless bytes arrived since
    /// [MQTT-3.1.2-24].
    fn keep_alive_due(&mut self, id: ConnId, at: Time) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.keep_alive_timer != Some(at) {
            return;
        }
        let Some(client) = conn.client() else {
            return;
        };
        let deadline = keep_alive_deadline(conn.last_received, client.keep_alive);
        if deadline > self.now {
            conn.keep_alive_timer = Some(deadline);
            self.timers.schedule(deadline, Timer::KeepAlive(id));
        } else {
            let client_id = self.sessions.get(client.session).map(|s| &*s.client_id);
            tracing::debug!(conn = id.0, client_id, "keep alive timed out");
            // A bridge's remote broker is not told: Keep Alive timeout is a server's reason
            // code, and the link is silent anyway. The remote publishes the bridge's will.
            let reason = match conn.bridge {
                Some(_) => None,
                None => Some(crate::codec::DisconnectReason::KeepAliveTimeout),
            };
            self.close_conn(id, reason, close::WillAction::Publish);
        }
    }
}

/// A client must be heard from within one and a half keep alive periods [MQTT-3.1.2-24].
fn keep_alive_deadline(last: Time, keep_alive_secs: u16) -> Time {
    last.plus_millis(u64::from(keep_alive_secs) * 1500)
}

/// What an idle connection costs is mostly these structures, each held once per connection in
/// a slab. Issue #11 allows 0.7 KiB of resident memory per idle connection in all, measured by
/// `midge-bench idle` against the daemon (io-mio/BENCHMARKS.md gives the breakdown): 240 bytes
/// of `Connection` and 168 of `Session`, then the connection and session indexes, the keep
/// alive timer, the client id and the daemon's own per-connection state. A field added here is
/// paid by every connection: what only some connections use belongs behind a pointer, made
/// when first needed, as the outbound queue, the topic alias tables, output held for
/// durability, enhanced authentication and a pending will are.
#[cfg(test)]
mod memory_budget {
    use super::connection::{Client, Connection};
    use super::outbound::Outbound;
    use super::session::Session;
    use std::mem::size_of;

    #[test]
    fn per_connection_structures_stay_within_budget() {
        assert!(
            size_of::<Connection>() <= 240,
            "Connection is {} bytes",
            size_of::<Connection>()
        );
        assert!(
            size_of::<Client>() <= 72,
            "Client is {} bytes",
            size_of::<Client>()
        );
        // The bridge mark (`Session::bridge`, 8 bytes) took it to 168 and an idle connection to
        // about 0.71 KiB, over the 0.7 target; folding the connection and the expiry deadline
        // (never both set) into one `Attachment` brought it to 152.
        assert!(
            size_of::<Session>() <= 160,
            "Session is {} bytes",
            size_of::<Session>()
        );
    }

    #[test]
    fn a_session_without_messages_holds_one_pointer_of_outbound_state() {
        assert_eq!(size_of::<Outbound>(), size_of::<usize>());
        let outbound = Outbound::default();
        assert_eq!(outbound.queue_len(), 0);
        assert_eq!(outbound.inflight_len(), 0);
        assert!(outbound.has_room(1));
    }
}
