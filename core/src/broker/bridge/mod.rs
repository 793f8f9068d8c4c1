//! Bridges: this broker as a client of another broker, forwarding chosen topics both ways.
//!
//! A bridge is two things. Its **local session** (client id `local_clientid`) is an ordinary
//! session of this broker whose subscriptions are the bridge's `out` topics: messages matching
//! them queue in it under the usual limits and persistence, and leave through the usual
//! outbound QoS machinery. Its **link** is a connection this broker dials ([`Action::Dial`])
//! and speaks as a client: CONNECT, then SUBSCRIBE for the `in` topics, PINGREQ. Once CONNACK
//! arrives the link is attached to the local session exactly as a client's connection would
//! be, so deliveries to the remote, their acknowledgements and their resending after a
//! reconnect are the broker's subscriber code, and PUBLISH from the remote is the broker's
//! publisher code (acknowledged once durable, inbound QoS 2 ids kept). Only the framing of the
//! link ([`link`]), the renaming of topics ([`rename`]), redialing ([`backoff`]) and the state
//! notifications ([`notify`]) are the bridge's own.
//!
//! [`Action::Dial`]: super::Action::Dial

mod backoff;
mod config;
mod link;
mod local;
mod notify;
mod rename;

pub use config::{Backoff, BridgeAddress, BridgeConfig, BridgeDirection, BridgeId, BridgeTopic};

use super::time::Time;
use super::{Config, ConnId};
use crate::codec::{PacketId, Publish};
use backoff::BackoffState;

/// What a bridge is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Waiting out its backoff; it dials at `until`.
    Waiting { until: Time },
    /// `Action::Dial` was asked for; `Input::Dialed` or `Input::DialFailed` answers.
    Dialing,
    /// CONNECT was sent on `conn`; CONNACK is awaited.
    Connecting { conn: ConnId },
    /// Connected: messages flow on `conn`.
    Up { conn: ConnId },
    /// The broker is shutting down: no more dialing.
    Stopped,
}

/// The running state of one bridge.
#[derive(Debug)]
pub(crate) struct BridgeState {
    pub link: Link,
    /// The address dialed now or next, an index into `BridgeConfig::addresses`.
    pub address: usize,
    pub backoff: BackoffState,
    /// The packet id of the SUBSCRIBE awaiting its SUBACK.
    pub subscribe_id: Option<PacketId>,
    /// The remote broker keeps retained messages (an MQTT 5 CONNACK may say it does not
    /// [MQTT-3.2.2-14] (5.0)): otherwise RETAIN is cleared on what the bridge sends it.
    pub remote_retain: bool,
}

impl BridgeState {
    fn new() -> BridgeState {
        BridgeState {
            link: Link::Dialing,
            address: 0,
            backoff: BackoffState::default(),
            subscribe_id: None,
            remote_retain: true,
        }
    }
}

impl BridgeId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// Makes a PUBLISH going out on a bridge's link what the remote gets: its remote topic name,
/// and no RETAIN where the remote keeps no retained messages.
pub(crate) fn outgoing(
    config: &Config,
    bridges: &[BridgeState],
    bridge: BridgeId,
    publish: &mut Publish,
) {
    if let Some(cfg) = config.bridges.get(bridge.index())
        && let Some(topic) = rename::outgoing(cfg, &publish.topic)
    {
        publish.topic = topic;
    }
    if bridges
        .get(bridge.index())
        .is_some_and(|s| !s.remote_retain)
    {
        publish.retain = false;
    }
}
