//! The broker's limits and switches. Names and special values follow Mosquitto's configuration
//! options where one exists, so the daemon can map mosquitto.conf onto this directly.

use super::ListenerId;
use crate::codec::{MAX_PACKET_SIZE, QoS};
use core::num::{NonZeroU16, NonZeroU32};
use std::collections::BTreeMap;

/// Broker configuration. Every queue, buffer and map a client can grow is bounded here.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most simultaneous network connections; `None` means no limit (Mosquitto's -1). A
    /// connection beyond it is closed as soon as it opens.
    pub max_connections: Option<usize>,
    /// Largest packet accepted from a client, fixed header included. Announced to MQTT 5 clients
    /// in CONNACK when below the protocol maximum.
    pub max_packet_size: u32,
    /// Largest PUBLISH payload accepted, in bytes; 0 means no limit (Mosquitto's
    /// message_size_limit). A larger message is acknowledged (MQTT 5: reason 0x83) and dropped.
    pub message_size_limit: u32,
    /// Outbound QoS 1 and 2 messages in flight per client, unacknowledged; 0 means no limit
    /// beyond the client's own Receive Maximum (Mosquitto's max_inflight_messages).
    pub max_inflight_messages: u16,
    /// Messages queued per session beyond those in flight; 0 means no limit
    /// (Mosquitto's max_queued_messages). Overflow drops the new message, counted and logged.
    pub max_queued_messages: usize,
    /// Payload bytes queued per session; 0 means no limit (Mosquitto's max_queued_bytes).
    pub max_queued_bytes: usize,
    /// Queue QoS 0 messages for offline persistent sessions (Mosquitto's queue_qos0_messages).
    pub queue_qos0_messages: bool,
    /// Largest keep alive a client may ask for; `None` means no limit. An MQTT 5 client asking
    /// for more, or for 0 (none at all), is told the maximum as Server Keep Alive; a 3.1.x client
    /// asking for more or for 0 has no way to be told, so it is refused with "identifier
    /// rejected", as Mosquitto documents.
    pub max_keepalive: Option<u16>,
    /// Whether retained messages are supported (Mosquitto's retain_available).
    pub retain_available: bool,
    /// The highest QoS the clients of a listener may use, for listeners limited below QoS 2
    /// (Mosquitto's per-listener max_qos); listeners not named here allow QoS 2. See
    /// [`Config::max_qos`].
    pub listener_max_qos: BTreeMap<ListenerId, QoS>,
    /// Whether a client may connect with an empty client id and be assigned one
    /// (Mosquitto's allow_zero_length_clientid).
    pub allow_zero_length_clientid: bool,
    /// Prefix of assigned client ids (Mosquitto's auto_id_prefix).
    pub auto_id_prefix: String,
    /// Topic aliases an MQTT 5 client may use in its PUBLISH packets, announced as Topic Alias
    /// Maximum in CONNACK; 0 allows none (Mosquitto's max_topic_alias).
    pub max_topic_alias: u16,
    /// Topic aliases the broker uses towards an MQTT 5 client that accepts them, at most
    /// (Mosquitto's max_topic_alias_broker); 0 uses none.
    pub max_topic_alias_broker: u16,
    /// What an MQTT 5 client that asks for Response Information is given: this prefix followed
    /// by its client id, as a topic it may build response topics on. `None` gives nothing.
    pub response_topic_prefix: Option<String>,
    /// Time a new connection has to send CONNECT before it is closed, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Messages a client may send in one enhanced authentication exchange (MQTT 5 AUTH, the
    /// CONNECT or AUTH that starts it included); beyond them it fails.
    pub max_auth_rounds: u32,
    /// Bytes of Authentication Data a client may send in one enhanced authentication exchange;
    /// beyond them it fails.
    pub max_auth_data: usize,
    /// Inbound QoS 2 messages a client may have awaiting PUBREL; announced to MQTT 5 clients as
    /// Receive Maximum when below 65,535.
    pub receive_maximum: u16,
    /// Subscriptions one session may hold.
    pub max_subscriptions_per_session: usize,
    /// Sessions, connected or not, the broker keeps.
    pub max_sessions: usize,
    /// Retained messages the broker keeps. Retained messages are never counted against a
    /// session's queue limits; at most this many of those sent on subscribe wait in one
    /// session's queue, and more are dropped (counted in `dropped_queue_full`).
    pub max_retained_messages: usize,
    /// Bytes of output a connection may have waiting for the network before QoS 0 messages to it
    /// are dropped (counted) and the broker stops reading its packets until the output drains.
    /// QoS 1 and 2 output is bounded by the in-flight window instead (`max_inflight_messages`
    /// and the client's Receive Maximum), not by this limit.
    pub max_connection_buffer: usize,
    /// Record persistent state as `Action::Persist` and hold output until it is durable
    /// (Mosquitto's persistence option, with a write-ahead log instead of periodic snapshots).
    pub persistence: bool,
    /// Seed of the generator for assigned client ids. The daemon seeds it from the operating
    /// system so that ids cannot be guessed; the simulator from its run's seed.
    pub client_id_seed: [u8; 32],
    /// Seconds between publications of the `$SYS` tree; 0 publishes nothing (Mosquitto's
    /// sys_interval). Mosquitto's default is 10, which the daemon sets; the default here is 0
    /// so that a broker built for a test sends only what the test asks for.
    pub sys_interval: u64,
    /// The payload of `$SYS/broker/version`.
    pub version: String,
    /// Bridges to other brokers (Mosquitto's `connection` sections), dialed at start.
    pub bridges: Vec<super::bridge::BridgeConfig>,
    /// A bug the simulator plants to prove its checkers catch it (`sim-bugs` feature only).
    #[cfg(feature = "sim-bugs")]
    pub bug: Option<crate::bugs::Bug>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_connections: None,
            max_packet_size: MAX_PACKET_SIZE,
            message_size_limit: 0,
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_messages: false,
            max_keepalive: None,
            retain_available: true,
            listener_max_qos: BTreeMap::new(),
            allow_zero_length_clientid: true,
            auto_id_prefix: "auto-".to_owned(),
            max_topic_alias: 10,
            max_topic_alias_broker: 10,
            response_topic_prefix: Some("response/".to_owned()),
            connect_timeout_ms: 10_000,
            max_auth_rounds: 8,
            max_auth_data: 64 * 1024,
            receive_maximum: u16::MAX,
            max_subscriptions_per_session: 100_000,
            max_sessions: 1_000_000,
            max_retained_messages: 1_000_000,
            max_connection_buffer: 1 << 20,
            persistence: false,
            client_id_seed: [0; 32],
            sys_interval: 0,
            version: concat!("midge version ", env!("CARGO_PKG_VERSION")).to_owned(),
            bridges: Vec::new(),
            #[cfg(feature = "sim-bugs")]
            bug: None,
        }
    }
}

impl Config {
    /// The Receive Maximum this broker announces to its peers, clients in CONNACK and a
    /// bridge's remote in CONNECT: absent when it is the protocol's default of 65,535.
    pub(crate) fn announced_receive_maximum(&self) -> Option<NonZeroU16> {
        (self.receive_maximum < u16::MAX)
            .then(|| NonZeroU16::new(self.receive_maximum))
            .flatten()
    }

    /// The Maximum Packet Size this broker announces, as above: absent when it is the
    /// protocol's largest.
    pub(crate) fn announced_max_packet_size(&self) -> Option<NonZeroU32> {
        (self.max_packet_size < MAX_PACKET_SIZE)
            .then(|| NonZeroU32::new(self.max_packet_size))
            .flatten()
    }

    /// The highest QoS allowed to clients of `listener`. It is announced to MQTT 5 clients as
    /// Maximum QoS in CONNACK [MQTT-3.2.2-9] (5.0); a will above it refuses the connection
    /// [MQTT-3.2.2-12] (5.0), a PUBLISH above it closes the connection (MQTT 5: DISCONNECT
    /// 0x9B), and subscriptions are granted at most this QoS, as in Mosquitto. A subscription
    /// keeps the QoS granted when it was made, also when its session resumes on another listener
    /// (as in Mosquitto).
    pub fn max_qos(&self, listener: ListenerId) -> QoS {
        self.listener_max_qos
            .get(&listener)
            .copied()
            .unwrap_or(QoS::ExactlyOnce)
    }
}
