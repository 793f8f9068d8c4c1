//! One bridge link as the remote broker sees it: what the remote sent (parsed as the bridge
//! parses it, to know what the bridge was told and what it must answer), and every packet the
//! bridge sent, each checked against the bridge's configuration and what the remote announced
//! in its CONNACK.

use bytes::{Bytes, BytesMut};
use midge_core::broker::Time;
use midge_core::broker::bridge::{BridgeConfig, BridgeDirection, BridgeTopic};
use midge_core::codec::{
    self, ByteString, ConnAck, Connect, LastWill, MAX_PACKET_SIZE, Packet, PacketId,
    ProtocolVersion, Publish, QoS, QosPid, Subscribe, Subscription, SubscriptionOptions, topic,
};
use std::collections::{BTreeMap, BTreeSet};

/// What the remote owes the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    PubAck(PacketId),
    PubRec(PacketId),
    PubRel(PacketId),
    PubComp(PacketId),
    SubAck(PacketId, usize),
    PingResp,
}

/// An outbound QoS 1 or 2 message of the bridge, at the stage the remote has taken it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Qos1,
    Qos2,
    /// PUBREC sent (or PUBREL received): PUBCOMP is awaited.
    Released,
}

/// What an accepting CONNACK told the bridge.
#[derive(Debug, Clone, Copy)]
pub struct Announced {
    max_packet_size: u32,
    receive_maximum: u16,
    pub max_qos: QoS,
    pub retain: bool,
    topic_alias_maximum: u16,
    /// The keep alive in force: the remote's Server Keep Alive, else the configured one.
    pub keep_alive: u16,
}

impl Announced {
    pub fn of(ack: &ConnAck, cfg: &BridgeConfig) -> Announced {
        let v5 = cfg.protocol.is_v5();
        let p = &ack.properties;
        Announced {
            max_packet_size: p.maximum_packet_size.map_or(MAX_PACKET_SIZE, |m| m.get()),
            receive_maximum: p.receive_maximum.map_or(u16::MAX, |m| m.get()),
            max_qos: match p.maximum_qos {
                Some(q) if v5 => q,
                _ => QoS::ExactlyOnce,
            },
            retain: p.retain_available != Some(false),
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
            keep_alive: match p.server_keep_alive {
                Some(k) if v5 => k,
                _ => cfg.keepalive_secs,
            },
        }
    }
}

/// How the remote's stream ended the link, as far as the bridge is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Bytes that do not decode, a refusal, something other than CONNACK first, a DISCONNECT,
    /// a packet only a client sends, or a SUBACK for no SUBSCRIBE: the bridge closes the link
    /// at once.
    MustClose,
}

/// The link's two byte streams and what they say.
#[derive(Debug)]
pub struct Remote {
    cfg: BridgeConfig,
    version: ProtocolVersion,
    /// The bridging broker's maximum, which its decoder applies to what the remote sends.
    broker_max_packet_size: u32,
    /// When the driver reported the link connected.
    pub dialed_at: Time,
    /// The will the CONNECT must carry, when the driver knows it (see `World::expected_will`).
    expected_will: Option<Option<LastWill>>,

    /// Bytes from the bridge not yet decoded, and the packets decoded.
    received: BytesMut,
    packets: usize,
    /// The bridge sent DISCONNECT.
    disconnected: bool,
    /// The last time the bridge's bytes reached the remote.
    pub last_from_bridge: Time,

    /// Bytes the remote sent that are not yet parsed.
    sent: BytesMut,
    /// The last time the remote sent anything.
    pub last_from_remote: Time,
    /// The remote accepted the bridge with these.
    pub announced: Option<Announced>,
    /// The remote refused the bridge with this CONNACK.
    pub refusal: Option<codec::ConnectReason>,
    /// The remote's stream ends the link; nothing after it counts.
    pub ending: Option<Ending>,
    /// The bridge stopped reading the link at some point: what the remote sent may still wait.
    pub paused: bool,
    pub blocked: bool,

    /// The bridge's QoS 1 and 2 messages on this link, by packet id.
    inflight: BTreeMap<PacketId, Stage>,
    /// The packet id of the SUBSCRIBE awaiting its SUBACK, and SUBSCRIBEs sent.
    subscribe_id: Option<PacketId>,
    pub subscribes: usize,
    /// Topic aliases the bridge set on this link.
    aliases: BTreeMap<u16, ByteString>,
    /// Packet ids the remote acknowledged (PUBACK, PUBREC, PUBCOMP, SUBACK) before it saw
    /// them: the bridge may have put the message in flight or sent the SUBSCRIBE with a held
    /// or blocked write, and applied the guess before the packet reached the remote. Such a
    /// packet's id is not tracked.
    early_acks: BTreeSet<PacketId>,
    /// Packet ids the remote used on this link: QoS 1 and 2 PUBLISH, PUBREC, PUBREL.
    remote_qos1: BTreeSet<PacketId>,
    remote_qos2: BTreeSet<PacketId>,
    remote_pubrec: BTreeSet<PacketId>,
    remote_pubrel: BTreeSet<PacketId>,
    /// Responses the remote owes, oldest first.
    pub owed: Vec<Owed>,
}

impl Remote {
    pub fn new(
        cfg: &BridgeConfig,
        broker_max_packet_size: u32,
        now: Time,
        expected_will: Option<Option<LastWill>>,
    ) -> Remote {
        Remote {
            cfg: cfg.clone(),
            version: cfg.protocol,
            broker_max_packet_size,
            dialed_at: now,
            expected_will,
            received: BytesMut::new(),
            packets: 0,
            disconnected: false,
            last_from_bridge: now,
            sent: BytesMut::new(),
            last_from_remote: now,
            announced: None,
            refusal: None,
            ending: None,
            paused: false,
            blocked: false,
            inflight: BTreeMap::new(),
            subscribe_id: None,
            subscribes: 0,
            aliases: BTreeMap::new(),
            early_acks: BTreeSet::new(),
            remote_qos1: BTreeSet::new(),
            remote_qos2: BTreeSet::new(),
            remote_pubrec: BTreeSet::new(),
            remote_pubrel: BTreeSet::new(),
            owed: Vec::new(),
        }
    }

    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Records bytes the remote sends, parsing whole packets as the bridge does.
    pub fn remote_sent(&mut self, bytes: &[u8], now: Time) {
        if !bytes.is_empty() {
            self.last_from_remote = now;
        }
        if self.ending.is_some() {
            return;
        }
        self.sent.extend_from_slice(bytes);
        loop {
            match codec::decode_from(&mut self.sent, self.version, self.broker_max_packet_size) {
                Ok(Some(packet)) => {
                    self.remote_packet(packet);
                    if self.ending.is_some() {
                        self.sent.clear();
                        return;
                    }
                }
                Ok(None) => return,
                Err(_) => {
                    self.ending = Some(Ending::MustClose);
                    self.sent.clear();
                    return;
                }
            }
        }
    }

    /// What a packet from the remote means to the bridge, mirrored here.
    fn remote_packet(&mut self, packet: Packet) {
        let Some(_) = self.announced else {
            match &packet {
                Packet::ConnAck(ack) if ack.reason == codec::ConnectReason::Success => {
                    self.announced = Some(Announced::of(ack, &self.cfg));
                }
                Packet::ConnAck(ack) => {
                    self.refusal = Some(ack.reason);
                    self.ending = Some(Ending::MustClose);
                }
                _ => self.ending = Some(Ending::MustClose),
            }
            return;
        };
        match packet {
            Packet::Publish(p) => match p.qos_pid {
                QosPid::AtMostOnce => {}
                QosPid::AtLeastOnce(id) => {
                    self.remote_qos1.insert(id);
                }
                QosPid::ExactlyOnce(id) => {
                    self.remote_qos2.insert(id);
                }
            },
            // The bridge ends a flow only at the stage it expects, as here.
            Packet::PubAck(a) => {
                self.early_ack(a.packet_id);
                if self.inflight.get(&a.packet_id) == Some(&Stage::Qos1) {
                    self.inflight.remove(&a.packet_id);
                }
            }
            Packet::PubRec(r) => {
                self.early_ack(r.packet_id);
                self.remote_pubrec.insert(r.packet_id);
                if self.inflight.get(&r.packet_id) == Some(&Stage::Qos2) {
                    if r.reason.is_error() {
                        self.inflight.remove(&r.packet_id);
                    } else {
                        self.inflight.insert(r.packet_id, Stage::Released);
                    }
                }
            }
            Packet::PubComp(c) => {
                self.early_ack(c.packet_id);
                if self.inflight.get(&c.packet_id) == Some(&Stage::Released) {
                    self.inflight.remove(&c.packet_id);
                }
            }
            Packet::PubRel(r) => {
                self.remote_pubrel.insert(r.packet_id);
            }
            Packet::SubAck(s) => {
                if self.subscribe_id == Some(s.packet_id) {
                    self.subscribe_id = None;
                } else if self.subscribes > 0
                    || self.expected_subscriptions(QoS::ExactlyOnce).is_empty()
                {
                    // No SUBSCRIBE awaits it, and none is still on its way.
                    self.ending = Some(Ending::MustClose);
                } else {
                    self.early_acks.insert(s.packet_id);
                }
            }
            Packet::PingResp => {}
            Packet::Disconnect(_)
            | Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::UnsubAck(_)
            | Packet::PingReq
            | Packet::Auth(_) => self.ending = Some(Ending::MustClose),
        }
    }

    /// Decodes what the bridge sent and checks each packet.
    pub fn bridge_sent(&mut self, bytes: &Bytes, now: Time) {
        assert!(!bytes.is_empty(), "an empty Send on a bridge link");
        self.last_from_bridge = now;
        self.received.extend_from_slice(bytes);
        loop {
            // [MQTT-3.2.2-15] (5.0): nothing larger than the remote's Maximum Packet Size,
            // once it is known: the CONNECT was written before any CONNACK (it may reach the
            // remote after one, when it waited for the log).
            let max = match self.announced {
                Some(a) if self.packets > 0 => a.max_packet_size,
                _ => MAX_PACKET_SIZE,
            };
            let packet = match codec::decode_from(&mut self.received, self.version, max) {
                Ok(Some(packet)) => packet,
                Ok(None) => return,
                Err(e) => panic!(
                    "the bridge sent bytes that do not decode in {:?} within the remote's \
                     maximum packet size {max}: {e:?}",
                    self.version
                ),
            };
            self.bridge_packet(packet);
        }
    }

    fn bridge_packet(&mut self, packet: Packet) {
        self.packets += 1;
        // [MQTT-3.14.4-1] (3.1.1) (5.0)
        assert!(
            !self.disconnected,
            "the bridge sent {packet:?} after its DISCONNECT"
        );
        if self.packets == 1 {
            // [MQTT-3.1.0-1] (3.1.1) (5.0)
            let Packet::Connect(connect) = &packet else {
                panic!("the first packet on a bridge link is not CONNECT: {packet:?}");
            };
            self.check_connect(connect);
            return;
        }
        let Some(announced) = self.announced else {
            // The bridge waits for CONNACK: nothing is attached to the link before it.
            panic!("the bridge sent {packet:?} before the remote's CONNACK");
        };
        match packet {
            Packet::Publish(p) => self.check_publish(p, announced),
            Packet::PubAck(a) => assert!(
                self.remote_qos1.contains(&a.packet_id),
                "PUBACK for no QoS 1 PUBLISH of the remote: {a:?}"
            ),
            Packet::PubRec(r) => {
                assert!(
                    self.remote_qos2.contains(&r.packet_id),
                    "PUBREC for no QoS 2 PUBLISH of the remote: {r:?}"
                );
                if !r.reason.is_error() {
                    self.owe(Owed::PubRel(r.packet_id));
                }
            }
            Packet::PubComp(c) => assert!(
                self.remote_pubrel.contains(&c.packet_id),
                "PUBCOMP for no PUBREL of the remote: {c:?}"
            ),
            Packet::PubRel(r) => {
                // An answer to a PUBREC of the remote (a repeat, or 0x92 for an id the bridge
                // does not know, which 3.1.x cannot say) changes nothing; otherwise it is a
                // PUBREL sent again on a new link, for a message the remote received before.
                if !self.remote_pubrec.contains(&r.packet_id) {
                    match self.inflight.get(&r.packet_id) {
                        // [MQTT-4.3.3-4] (5.0): PUBREL only after PUBREC.
                        Some(Stage::Qos1 | Stage::Qos2) => {
                            panic!("PUBREL for a message the remote has not received yet: {r:?}")
                        }
                        _ => {
                            self.inflight.insert(r.packet_id, Stage::Released);
                        }
                    }
                }
                self.owe(Owed::PubComp(r.packet_id));
            }
            Packet::Subscribe(s) => self.check_subscribe(s, announced),
            Packet::PingReq => {
                assert!(
                    announced.keep_alive > 0,
                    "PINGREQ on a link without keep alive"
                );
                self.owe(Owed::PingResp);
            }
            Packet::Disconnect(_) => self.disconnected = true,
            Packet::Connect(_) => panic!("a second CONNECT on a bridge link"),
            Packet::Unsubscribe(_) => panic!("UNSUBSCRIBE from a bridge, which never unsubscribes"),
            Packet::Auth(_) => {
                panic!("AUTH from a bridge, which asks for no authentication method")
            }
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                panic!("the bridge sent a server's packet: {packet:?}")
            }
        }
    }

    /// The CONNECT says what the configuration says.
    fn check_connect(&self, c: &Connect) {
        let cfg = &self.cfg;
        let v5 = cfg.protocol.is_v5();
        assert_eq!(c.protocol_version, cfg.protocol, "CONNECT version");
        assert_eq!(&*c.client_id, cfg.remote_clientid, "CONNECT client id");
        assert_eq!(c.clean_start, cfg.clean_session, "CONNECT clean session");
        assert_eq!(c.keep_alive, cfg.keepalive_secs, "CONNECT keep alive");
        assert_eq!(c.bridge, cfg.try_private && !v5, "CONNECT try_private bit");
        assert_eq!(
            c.username.as_deref(),
            cfg.remote_username.as_deref(),
            "CONNECT user name"
        );
        assert_eq!(
            c.password.as_deref(),
            cfg.remote_password.as_deref(),
            "CONNECT password"
        );
        if v5 {
            assert_eq!(
                c.properties.session_expiry_interval,
                (!cfg.clean_session).then_some(u32::MAX),
                "CONNECT Session Expiry Interval"
            );
            assert!(
                c.properties.topic_alias_maximum.unwrap_or(0) == 0,
                "the bridge takes no topic aliases from the remote"
            );
        }
        if let Some(will) = &self.expected_will {
            assert_eq!(&c.will, will, "CONNECT will");
        }
    }

    fn check_publish(&mut self, p: Publish, a: Announced) {
        let v5 = self.version.is_v5();
        // [MQTT-3.2.2-11] (5.0)
        assert!(
            p.qos_pid.qos() <= a.max_qos,
            "PUBLISH at {:?} to a remote whose Maximum QoS is {:?}",
            p.qos_pid.qos(),
            a.max_qos
        );
        // [MQTT-3.2.2-14] (5.0)
        assert!(
            a.retain || !p.retain,
            "PUBLISH with RETAIN to a remote without Retain Available"
        );
        let mut name = p.topic.clone();
        if let Some(alias) = p.properties.topic_alias {
            // [MQTT-3.3.2-9] (5.0)
            assert!(
                v5 && alias.get() <= a.topic_alias_maximum,
                "topic alias {alias} sent to a remote whose maximum is {}",
                a.topic_alias_maximum
            );
            if p.topic.is_empty() {
                name = self
                    .aliases
                    .get(&alias.get())
                    .unwrap_or_else(|| panic!("topic alias {alias} used before it was set"))
                    .clone();
            } else {
                self.aliases.insert(alias.get(), p.topic.clone());
            }
        }
        assert!(
            self.goes_out(&name),
            "PUBLISH on {name:?}, which no out line of the bridge carries"
        );
        // What the remote published comes back only as a retained message queued for the
        // remote at connect (under another line's name); live, the local session's no local
        // keeps it here [MQTT-3.8.3-3] (5.0).
        assert!(
            p.payload.first() != Some(&b'R') || p.retain || !a.retain,
            "the remote's own message came back over the bridge: {p:?}"
        );
        let Some(id) = p.qos_pid.packet_id() else {
            return;
        };
        if !p.dup {
            // [MQTT-2.2.1-3] (5.0), [MQTT-2.3.1-2] (3.1.1)
            assert!(
                !self.inflight.contains_key(&id) && self.subscribe_id != Some(id),
                "a new PUBLISH reuses packet id {id}, in use: {p:?}"
            );
        }
        let (stage, owed) = match p.qos_pid.qos() {
            QoS::ExactlyOnce => (Stage::Qos2, Owed::PubRec(id)),
            _ => (Stage::Qos1, Owed::PubAck(id)),
        };
        if !self.early_acks.remove(&id) {
            self.inflight.insert(id, stage);
        }
        self.owe(owed);
        // [MQTT-3.3.4-7] (5.0): the remote's Receive Maximum bounds what is unacknowledged.
        assert!(
            self.inflight.len() <= usize::from(a.receive_maximum),
            "{} QoS 1/2 messages unacknowledged, the remote's Receive Maximum is {}",
            self.inflight.len(),
            a.receive_maximum
        );
    }

    /// Whether the bridge may send a message on remote topic `name`: it is the remote name of
    /// a local topic an `out`/`both` line matches (its remote prefix followed by what follows
    /// the local prefix), or such a local topic left unchanged when renaming did not apply; or
    /// the bridge's own notification.
    fn goes_out(&self, name: &str) -> bool {
        let cfg = &self.cfg;
        let notification =
            cfg.notifications && !cfg.notifications_local_only && name == cfg.notification_topic;
        notification
            || cfg
                .topics
                .iter()
                .filter(|t| carries(t, BridgeDirection::Out))
                .any(|t| {
                    let local_filter = format!("{}{}", t.local_prefix, t.pattern);
                    topic::matches(&local_filter, name)
                        || name
                            .strip_prefix(t.remote_prefix.as_str())
                            .is_some_and(|rest| {
                                topic::matches(&local_filter, &format!("{}{rest}", t.local_prefix))
                            })
                })
    }

    fn check_subscribe(&mut self, s: Subscribe, a: Announced) {
        self.subscribes += 1;
        assert_eq!(self.subscribes, 1, "a second SUBSCRIBE on one link");
        // [MQTT-2.2.1-3] (5.0), [MQTT-2.3.1-2] (3.1.1)
        assert!(
            !self.inflight.contains_key(&s.packet_id),
            "SUBSCRIBE with packet id {} of a PUBLISH in flight",
            s.packet_id
        );
        assert_eq!(
            s.subscriptions,
            self.expected_subscriptions(a.max_qos),
            "the bridge's SUBSCRIBE"
        );
        if !self.early_acks.remove(&s.packet_id) {
            self.subscribe_id = Some(s.packet_id);
        }
        self.owe(Owed::SubAck(s.packet_id, s.subscriptions.len()));
    }

    /// The subscriptions of the `in` and `both` lines, in order: the remote filter at the
    /// line's QoS capped by the remote's Maximum QoS; MQTT 5 with no local and retain as
    /// published. Lines whose remote filter is not a filter are left out.
    pub fn expected_subscriptions(&self, max_qos: QoS) -> Vec<Subscription> {
        let v5 = self.version.is_v5();
        self.cfg
            .topics
            .iter()
            .filter(|t| carries(t, BridgeDirection::In))
            .map(|t| (format!("{}{}", t.remote_prefix, t.pattern), t.qos))
            .filter(|(f, _)| topic::is_valid_filter(f))
            .map(|(filter, qos)| Subscription {
                filter: ByteString::from(filter),
                options: SubscriptionOptions {
                    no_local: v5,
                    retain_as_published: v5,
                    ..SubscriptionOptions::new(qos.min(max_qos))
                },
            })
            .collect()
    }

    /// Notes an acknowledgement for a packet id the remote has not seen in use.
    fn early_ack(&mut self, id: PacketId) {
        if !self.inflight.contains_key(&id) {
            self.early_acks.insert(id);
        }
    }

    fn owe(&mut self, owed: Owed) {
        if !self.owed.contains(&owed) {
            self.owed.push(owed);
        }
    }
}

/// Whether a line carries messages the way `way` (`In` or `Out`) names.
fn carries(line: &BridgeTopic, way: BridgeDirection) -> bool {
    line.direction == way || line.direction == BridgeDirection::Both
}
