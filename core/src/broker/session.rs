//! Sessions: the state that outlives a network connection (3.1.1 and 5.0, 4.1).

use super::connection::Will;
use super::outbound::Outbound;
use super::time::Time;
use super::{ConnId, ListenerId};
use crate::codec::{ByteString, PacketId, ProtocolVersion};
use std::collections::BTreeSet;

/// Key of a session in the broker's session table.
pub(crate) type SessionKey = usize;

/// When a session ends after its connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// With the connection: 3.1.x clean sessions, MQTT 5 Session Expiry Interval 0.
    OnDisconnect,
    /// This many seconds after the connection closes.
    After(u32),
    /// Never: 3.1.x persistent sessions, MQTT 5 Session Expiry Interval 0xFFFFFFFF.
    Never,
}

impl Expiry {
    /// The MQTT 5 Session Expiry Interval (5.0, 3.1.2.11.2).
    pub(crate) fn from_interval(secs: u32) -> Expiry {
        match secs {
            0 => Expiry::OnDisconnect,
            u32::MAX => Expiry::Never,
            s => Expiry::After(s),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Session {
    pub client_id: ByteString,
    /// The user the latest connection authenticated as, for topic decisions.
    pub username: Option<ByteString>,
    /// The listener of the latest connection, for topic decisions.
    pub listener: ListenerId,
    /// The connection it is attached to, if any.
    pub conn: Option<ConnId>,
    /// Protocol version of the latest connection.
    pub version: ProtocolVersion,
    pub expiry: Expiry,
    /// When a detached session with `Expiry::After` ends.
    pub expires_at: Option<Time>,
    /// The filters it subscribes to; the options live in the router.
    pub subscriptions: BTreeSet<ByteString>,
    pub outbound: Outbound,
    /// Inbound QoS 2 packet ids received and acknowledged with PUBREC, awaiting PUBREL. The
    /// message was delivered on receipt, so only the id is kept (4.3.3, Method B's alternative
    /// of storing the packet identifier).
    pub inbound_qos2: BTreeSet<PacketId>,
    /// A will whose Will Delay Interval is running, with the time it is due.
    pub pending_will: Option<(Time, Will)>,
    /// Messages dropped since the last report, for rate-limited logging.
    pub dropped_unreported: u64,
    /// The session's state is in the log (persistence on, session outlives its connection).
    pub persisted: bool,
    /// A WillSet record stands for it.
    pub will_recorded: bool,
    /// The bridge whose local session this is: its client is this broker's link to another
    /// one, which no client may take over and the authorizer is not asked about.
    pub bridge: Option<super::bridge::BridgeId>,
}

impl Session {
    pub(crate) fn new(client_id: ByteString, version: ProtocolVersion, expiry: Expiry) -> Session {
        Session {
            client_id,
            username: None,
            listener: ListenerId::default(),
            conn: None,
            version,
            expiry,
            expires_at: None,
            subscriptions: BTreeSet::new(),
            outbound: Outbound::default(),
            inbound_qos2: BTreeSet::new(),
            pending_will: None,
            dropped_unreported: 0,
            persisted: false,
            will_recorded: false,
            bridge: None,
        }
    }
}
