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

/// A session's connection, or, without one, its expiry deadline. One field rather than an
/// `Option<ConnId>` and an `Option<Time>`: a connected session has no deadline, so the two were
/// never both set, and the fold saves 16 bytes in every session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attachment {
    /// Attached to this connection.
    Connected(ConnId),
    /// No connection and no deadline: a session just made or recovered, one that never expires,
    /// or one between losing its connection and being given its deadline.
    Detached,
    /// No connection; the session ends at this time (`Expiry::After`).
    ExpiresAt(Time),
}

#[derive(Debug)]
pub(crate) struct Session {
    pub client_id: ByteString,
    /// The user the latest connection authenticated as, for topic decisions.
    /// A `Box<str>` rather than a `ByteString`: half the size in every session.
    pub username: Option<Box<str>>,
    /// The listener of the latest connection, for topic decisions.
    pub listener: ListenerId,
    /// Its connection, or when it ends without one.
    attachment: Attachment,
    /// Protocol version of the latest connection.
    pub version: ProtocolVersion,
    pub expiry: Expiry,
    /// The filters it subscribes to; the options live in the router.
    pub subscriptions: BTreeSet<ByteString>,
    pub outbound: Outbound,
    /// Inbound QoS 2 packet ids received and acknowledged with PUBREC, awaiting PUBREL. The
    /// message was delivered on receipt, so only the id is kept (4.3.3, Method B's alternative
    /// of storing the packet identifier).
    pub inbound_qos2: BTreeSet<PacketId>,
    /// A will whose Will Delay Interval is running, with the time it is due. Boxed: rare,
    /// and twice the size of the pointer in every session.
    pub pending_will: Option<Box<(Time, Will)>>,
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
            attachment: Attachment::Detached,
            version,
            expiry,
            subscriptions: BTreeSet::new(),
            outbound: Outbound::default(),
            inbound_qos2: BTreeSet::new(),
            pending_will: None,
            persisted: false,
            will_recorded: false,
            bridge: None,
        }
    }

    /// The connection it is attached to, if any.
    #[inline]
    pub(crate) fn conn(&self) -> Option<ConnId> {
        match self.attachment {
            Attachment::Connected(id) => Some(id),
            Attachment::Detached | Attachment::ExpiresAt(_) => None,
        }
    }

    /// When it ends: only a detached session with `Expiry::After` has a deadline.
    pub(crate) fn expires_at(&self) -> Option<Time> {
        match self.attachment {
            Attachment::ExpiresAt(at) => Some(at),
            Attachment::Connected(_) | Attachment::Detached => None,
        }
    }

    /// Attaches it to a connection, which cancels any expiry deadline.
    pub(crate) fn attach(&mut self, conn: ConnId) {
        self.attachment = Attachment::Connected(conn);
    }

    /// Detaches it from its connection, with no deadline yet.
    pub(crate) fn detach(&mut self) {
        self.attachment = Attachment::Detached;
    }

    /// Gives a detached session the time it ends at. An attached one has no deadline: the
    /// connection is kept, and the deadline ignored.
    pub(crate) fn expire_at(&mut self, at: Time) {
        debug_assert!(self.conn().is_none(), "an attached session has no deadline");
        if self.conn().is_none() {
            self.attachment = Attachment::ExpiresAt(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new(
            ByteString::from_static("c"),
            ProtocolVersion::V5,
            Expiry::After(10),
        )
    }

    #[test]
    fn a_deadline_is_given_only_to_a_detached_session_and_attaching_cancels_it() {
        let mut s = session();
        assert_eq!((s.conn(), s.expires_at()), (None, None));
        s.attach(ConnId(7));
        assert_eq!((s.conn(), s.expires_at()), (Some(ConnId(7)), None));
        s.detach();
        assert_eq!((s.conn(), s.expires_at()), (None, None));
        s.expire_at(Time::from_millis(5_000));
        assert_eq!(s.expires_at(), Some(Time::from_millis(5_000)));
        assert_eq!(s.conn(), None);
        // Not discarded while a connection is open [MQTT-4.1.0-1] (5.0): no deadline then.
        s.attach(ConnId(8));
        assert_eq!((s.conn(), s.expires_at()), (Some(ConnId(8)), None));
    }
}
