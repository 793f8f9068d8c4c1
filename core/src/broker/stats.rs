//! Counters of what the broker did, and of everything it had to drop: nothing is dropped
//! silently.

/// Broker counters, read with [`crate::broker::Broker::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now, connected or still awaiting CONNECT.
    pub connections_open: u64,
    /// Clients connected now.
    pub clients_connected: u64,
    /// Sessions kept now, connected or not.
    pub sessions: u64,
    /// Connections closed at once because `max_connections` was reached.
    pub connections_refused: u64,
    /// PUBLISH packets received from clients.
    pub publish_received: u64,
    /// PUBLISH packets refused by the authorizer, or addressed to the broker's own `$SYS` tree.
    pub publish_denied: u64,
    /// PUBLISH packets dropped because their payload exceeds `message_size_limit`.
    pub publish_too_large: u64,
    /// PUBLISH packets dropped because their Payload Format Indicator says UTF-8 and the
    /// payload is not.
    pub publish_invalid_payload: u64,
    /// PUBLISH packets sent to clients, redeliveries included.
    pub publish_sent: u64,
    /// Messages not queued for a session because its queue was full.
    pub dropped_queue_full: u64,
    /// Messages not sent because they exceed the receiving client's Maximum Packet Size.
    pub dropped_too_large: u64,
    /// QoS 0 messages not sent because the connection's output buffer was full.
    pub dropped_qos0_backlog: u64,
    /// QoS 0 messages for offline sessions, not queued (as `queue_qos0_messages` says).
    pub dropped_qos0_offline: u64,
    /// Retained messages not stored because `max_retained_messages` was reached.
    pub dropped_retained_limit: u64,
    /// Copies of messages deleted because their Message Expiry Interval passed before they
    /// could be sent (queued ones, and retained messages found expired).
    pub dropped_expired: u64,
    /// Deliveries a shared subscription member lost its connection or session with, handed to
    /// another member of the group: queued ones moved (each leaves a `Discarded` record for the
    /// first member), QoS 1 ones in flight copied.
    pub shared_handed_over: u64,
    /// Retained messages stored now.
    pub retained_messages: u64,
    /// Bytes received from clients.
    pub bytes_received: u64,
    /// Bytes handed to the driver to send.
    pub bytes_sent: u64,
    /// MQTT packets of every type received from clients, malformed ones excepted.
    pub messages_received: u64,
    /// MQTT packets of every type encoded for clients.
    pub messages_sent: u64,
    /// Payload bytes of the PUBLISH packets counted in `publish_received`.
    pub publish_bytes_received: u64,
    /// Payload bytes of the PUBLISH packets counted in `publish_sent`.
    pub publish_bytes_sent: u64,
    /// Most clients connected at the same time since the broker started.
    pub clients_maximum: u64,
    /// Detached sessions ended because their expiry interval passed.
    pub sessions_expired: u64,
    /// Network connections the driver reported opened, those refused included.
    pub connections_opened: u64,
    /// CONNECT packets received, refused ones included.
    pub connects_received: u64,
    /// Payload bytes of the retained messages stored now.
    pub retained_bytes: u64,
}
