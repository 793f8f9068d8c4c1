//! What a bridge is configured to do: the remote broker to dial, the topics that cross and how
//! they are renamed on the way, and the client the bridge presents to the remote. This is the
//! model of Mosquitto's `connection` sections; the daemon parses `mosquitto.conf` into it and
//! fills the defaults that need the host (such as the remote client id).

use crate::codec::{ProtocolVersion, QoS};

/// A bridge, named by its place in [`crate::broker::Config::bridges`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BridgeId(pub u32);

/// Which way messages on a bridged topic cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeDirection {
    /// From the remote broker to this one.
    In,
    /// From this broker to the remote one.
    Out,
    /// Both ways; loops are prevented (no local on MQTT 5, try_private on 3.1.1).
    Both,
}

/// One `topic` line: a filter and how its topics are renamed. A message on local topic
/// `local_prefix + T` crosses as `remote_prefix + T` and the other way round, for every `T`
/// matched by `pattern`. The pattern may be empty when a prefix names the whole topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTopic {
    pub pattern: String,
    pub direction: BridgeDirection,
    /// The QoS of the subscription made for it, on the remote (`In`) or local (`Out`) side.
    pub qos: QoS,
    pub local_prefix: String,
    pub remote_prefix: String,
}

/// One address of the remote broker. The driver resolves the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeAddress {
    pub host: String,
    pub port: u16,
}

/// How long to wait before dialing again after the connection failed or was lost
/// (Mosquitto's `restart_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// The same delay every time (`restart_timeout <secs>`).
    Constant { secs: u32 },
    /// "Decorrelated jitter" between `base` and `cap` seconds (`restart_timeout <base> <cap>`),
    /// drawn from the broker's seeded generator.
    Jitter { base_secs: u32, cap_secs: u32 },
}

/// One bridge (a `connection` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The name after `connection`; unique.
    pub name: String,
    /// Where the remote broker listens, tried in order on failure; never empty.
    pub addresses: Vec<BridgeAddress>,
    /// `round_robin true`: after a failure go on to the next address and stay there.
    /// `false` (the default): keep trying to return to the first address.
    pub round_robin: bool,
    pub topics: Vec<BridgeTopic>,
    /// The client id the bridge uses on the remote broker.
    pub remote_clientid: String,
    /// The client id of the bridge's session on this broker (Mosquitto's `local_clientid`,
    /// default `local.<remote_clientid>`).
    pub local_clientid: String,
    pub remote_username: Option<String>,
    pub remote_password: Option<Vec<u8>>,
    /// Clean session (MQTT 5: clean start with expiry 0) on the remote broker. Default false:
    /// the remote keeps the bridge's session and its QoS 1/2 messages across reconnects.
    pub clean_session: bool,
    /// Whether the bridge's local session is discarded when the bridge restarts. Default: the
    /// same as `clean_session`.
    pub local_clean_session: bool,
    /// `bridge_protocol_version`: 3.1, 3.1.1 (default) or 5.0.
    pub protocol: ProtocolVersion,
    /// On 3.1/3.1.1, announce the bridge by setting the top bit of the protocol level, so
    /// that a broker that understands it does not send back what the bridge published.
    pub try_private: bool,
    /// Keep alive on the remote connection, seconds (default 60).
    pub keepalive_secs: u16,
    pub restart: Backoff,
    /// Publish the bridge's state ("1" connected, "0" not) as a retained message on
    /// `notification_topic`, locally and on the remote (where a will sets "0").
    pub notifications: bool,
    /// Only publish notifications locally.
    pub notifications_local_only: bool,
    /// Default `$SYS/broker/connection/<remote_clientid>/state`, as Mosquitto.
    pub notification_topic: String,
}
