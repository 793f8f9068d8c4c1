//! Model MQTT clients, 3.1.1 and 5.0, as a careful client library behaves: each keeps its
//! session state across its own reconnects (packet ids in flight both ways, subscriptions),
//! resends on resume as the specification says (unacknowledged PUBLISH with DUP and its packet
//! id, PUBREL where PUBREC came, in the original order), accepts a QoS 2 packet id once until
//! PUBREL, and discards its session state when CONNACK says session present 0. Publishers tag
//! every payload with (publisher, sequence) and pipeline up to a window; subscribers use
//! wildcards; some own retained topics; some leave wills. Connections are dropped, closed and
//! retried with backoff.

use crate::MS;
use crate::SEC;
use crate::net::{Dialer, LinkId};
use crate::params::{ClientSpec, RETAINED_PER_OWNER, SessionKind};
use crate::payload::{self, Kind, TAG_LEN, Tag};
use crate::rng::Rng;
use crate::trace::{Ev, Pkt};
use crate::world::{Event, Phase, TICK, World};
use bytes::{Bytes, BytesMut};
use midge_core::codec::{
    self, ByteString, Connect, ConnectProperties, ConnectReason, Disconnect, DisconnectReason,
    LastWill, Packet, PacketId, PubAck, PubComp, PubRec, PubRel, Publish, PublishProperties, QoS,
    QosPid, SubAckReason, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
    Unsubscribe, UnsubscribeProperties, WillProperties,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::{NonZeroU16, NonZeroU32};

/// How long a client waits for CONNACK.
const CONNACK_TIMEOUT: u64 = 5 * SEC;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    Idle,
    AwaitConnAck,
    Connected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTimer {
    /// Publish, subscribe, disconnect: the workload.
    Act,
    /// Keep alive and timeouts of the connection of this generation.
    Tick,
    /// A slow reader reads.
    Read,
    /// Delayed acknowledgements are due.
    AckDue,
    Reconnect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// QoS 1, awaiting PUBACK.
    Puback,
    /// QoS 2, awaiting PUBREC.
    Pubrec,
    /// QoS 2 after PUBREC and PUBREL, awaiting PUBCOMP.
    Pubcomp,
}

/// A QoS 1 or 2 message this client published and has not finished.
#[derive(Debug, Clone)]
struct OutMsg {
    tag: Tag,
    topic: ByteString,
    qos: QoS,
    retain: bool,
    payload: Bytes,
    /// Its Message Expiry Interval, sent again unchanged with each resend.
    expiry: Option<u32>,
    stage: Stage,
    /// Order of first transmission, for resends [MQTT-4.4.0-1].
    order: u64,
}

#[derive(Debug)]
pub struct Client {
    pub idx: usize,
    pub id: ByteString,
    pub spec: ClientSpec,
    pub rng: Rng,
    pub link: Option<LinkId>,
    pub state: ConnState,
    /// Generation of the current connection: timers of earlier ones are stale.
    pub generation: u64,
    pub reconnect_gen: u64,
    /// Bytes that arrived and the client has not read from its socket yet (slow readers).
    pub sock: BytesMut,
    /// Bytes read and not yet parsed into whole packets.
    pub rx: BytesMut,
    attempts: u32,
    last_sent: u64,
    ping_sent: Option<u64>,
    connect_sent_at: u64,
    sent_clean: bool,
    keep_alive: u16,
    server_receive_max: usize,
    server_max_packet: u32,
    // Session state, kept across this client's connections.
    have_session: bool,
    /// Asked for a new session: clean start until a CONNACK.
    fresh: bool,
    /// The link of the last connection whose CONNACK arrived: the session's.
    attached: Option<LinkId>,
    /// CONNECTs sent since the last CONNACK read.
    unconfirmed: u32,
    next_pid: u16,
    out: BTreeMap<u16, OutMsg>,
    next_order: u64,
    pending_sub: BTreeMap<u16, Vec<(ByteString, QoS)>>,
    pending_unsub: BTreeSet<u16>,
    inbound_qos2: BTreeSet<u16>,
    /// QoS 1 packet ids received whose PUBACK is not sent yet.
    unacked_qos1: BTreeSet<u16>,
    /// Topic aliases the broker set on this connection.
    aliases: BTreeMap<u16, ByteString>,
    owed: VecDeque<Packet>,
    subs_done: bool,
    /// The filters this client means to hold now.
    active: BTreeMap<ByteString, QoS>,
    next_seq: u32,
    last_retained_at: u64,
}

impl Client {
    pub fn new(idx: usize, spec: ClientSpec, rng: Rng) -> Client {
        let active = spec
            .filters
            .iter()
            .map(|(f, q)| (ByteString::from(*f), *q))
            .collect();
        Client {
            idx,
            id: ByteString::from(format!("c{idx}")),
            spec,
            rng,
            link: None,
            state: ConnState::Idle,
            generation: 0,
            reconnect_gen: 0,
            sock: BytesMut::new(),
            rx: BytesMut::new(),
            attempts: 0,
            last_sent: 0,
            ping_sent: None,
            connect_sent_at: 0,
            sent_clean: false,
            keep_alive: 0,
            server_receive_max: usize::from(u16::MAX),
            server_max_packet: u32::MAX,
            have_session: false,
            fresh: false,
            attached: None,
            unconfirmed: 0,
            next_pid: 0,
            out: BTreeMap::new(),
            next_order: 0,
            pending_sub: BTreeMap::new(),
            pending_unsub: BTreeSet::new(),
            inbound_qos2: BTreeSet::new(),
            unacked_qos1: BTreeSet::new(),
            aliases: BTreeMap::new(),
            owed: VecDeque::new(),
            subs_done: false,
            active,
            next_seq: 0,
            last_retained_at: 0,
        }
    }

    /// What this client still waits for, if anything.
    pub fn busy(&self) -> Option<String> {
        if self.state != ConnState::Connected {
            return Some(format!("not connected ({:?})", self.state));
        }
        if let Some((pid, m)) = self.out.iter().next() {
            return Some(format!(
                "{} messages unfinished, first pid {pid} (c{}#{}, {:?})",
                self.out.len(),
                m.tag.0,
                m.tag.1,
                m.stage
            ));
        }
        if !self.owed.is_empty() {
            return Some("acknowledgements owed".to_owned());
        }
        if !self.subs_done || !self.pending_sub.is_empty() || !self.pending_unsub.is_empty() {
            return Some("subscriptions pending".to_owned());
        }
        if !self.rx.is_empty() || !self.sock.is_empty() {
            return Some(format!(
                "{} bytes unread, {} unparsed",
                self.sock.len(),
                self.rx.len()
            ));
        }
        None
    }

    fn alloc_pid(&mut self) -> PacketId {
        loop {
            self.next_pid = self.next_pid.wrapping_add(1);
            let id = self.next_pid;
            if id != 0
                && !self.out.contains_key(&id)
                && !self.pending_sub.contains_key(&id)
                && !self.pending_unsub.contains(&id)
            {
                return PacketId::new(id).expect("non-zero");
            }
        }
    }

    fn window(&self) -> usize {
        self.spec.window.min(self.server_receive_max)
    }

    fn max_receive(&self) -> u32 {
        self.spec.max_packet_size.unwrap_or(u32::MAX)
    }
}

fn summary(p: &Packet) -> Pkt {
    let mut s = Pkt {
        kind: match p {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        },
        ..Pkt::default()
    };
    match p {
        Packet::Publish(p) => {
            s.pid = p.qos_pid.packet_id().map_or(0, |id| id.get());
            s.qos = p.qos_pid.qos() as u8;
            s.dup = p.dup;
            s.retain = p.retain;
            s.tag = payload::parse(&p.payload).ok().map(|(_, t)| t);
        }
        Packet::PubAck(a) | Packet::PubRec(a) => {
            s.pid = a.packet_id.get();
            s.flag = a.reason.code();
        }
        Packet::PubRel(a) | Packet::PubComp(a) => {
            s.pid = a.packet_id.get();
            s.flag = a.reason.code();
        }
        Packet::Subscribe(x) => s.pid = x.packet_id.get(),
        Packet::SubAck(x) => s.pid = x.packet_id.get(),
        Packet::Unsubscribe(x) => s.pid = x.packet_id.get(),
        Packet::UnsubAck(x) => s.pid = x.packet_id.get(),
        Packet::ConnAck(a) => s.flag = u8::from(a.session_present),
        Packet::Disconnect(d) => s.flag = d.reason.code(),
        _ => {}
    }
    s
}

/// Size of a PUBLISH this client sends.
fn publish_len(topic: &str, qos: QoS, payload: usize, v5: bool) -> usize {
    let mut rem = 2 + topic.len() + payload;
    if qos != QoS::AtMostOnce {
        rem += 2;
    }
    if v5 {
        rem += 1;
    }
    let varint = match rem {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + varint + rem
}

impl World {
    // --- Connections ---------------------------------------------------------------------------

    pub fn client_timer(&mut self, c: usize, generation: u64, timer: ClientTimer) {
        match timer {
            ClientTimer::Act => self.client_act(c),
            ClientTimer::Reconnect
                if generation == self.clients[c].reconnect_gen
                    && self.clients[c].state == ConnState::Idle =>
            {
                self.client_connect(c)
            }
            ClientTimer::Tick if generation == self.clients[c].generation => self.client_tick(c),
            ClientTimer::Read if generation == self.clients[c].generation => self.client_read(c),
            ClientTimer::AckDue if generation == self.clients[c].generation => self.flush_owed(c),
            _ => {}
        }
    }

    fn client_connect(&mut self, c: usize) {
        if self.clients[c].link.is_some() {
            return;
        }
        let link = self.new_link(Dialer::Client(c), self.clients[c].spec.host);
        let now = self.now;
        let will = self.clients[c].spec.will.map(|(qos, delay)| {
            let cl = &mut self.clients[c];
            cl.next_seq += 1;
            let tag = (c as u16, cl.next_seq);
            let topic = format!("w/{c}");
            let payload = payload::make(Kind::Will, tag, TAG_LEN);
            self.checker
                .register(tag, Kind::Will, &topic, qos, payload.len(), None);
            self.checker.sent(tag);
            LastWill {
                topic: ByteString::from(topic),
                payload,
                qos,
                retain: false,
                properties: WillProperties {
                    will_delay_interval: (delay > 0).then_some(delay),
                    ..WillProperties::default()
                },
            }
        });
        let cl = &mut self.clients[c];
        cl.link = Some(link);
        cl.state = ConnState::AwaitConnAck;
        cl.generation += 1;
        cl.rx.clear();
        cl.sock.clear();
        cl.aliases.clear();
        cl.ping_sent = None;
        cl.connect_sent_at = now;
        let v5 = cl.spec.version.is_v5();
        let clean = match cl.spec.session {
            SessionKind::Clean => true,
            _ => cl.fresh,
        };
        cl.sent_clean = clean;
        cl.unconfirmed += 1;
        let properties = if v5 {
            ConnectProperties {
                session_expiry_interval: match cl.spec.session {
                    SessionKind::Persistent => Some(u32::MAX),
                    SessionKind::Expiring(s) => Some(s),
                    SessionKind::Clean => None,
                },
                receive_maximum: cl.spec.receive_maximum.and_then(NonZeroU16::new),
                maximum_packet_size: cl.spec.max_packet_size.and_then(NonZeroU32::new),
                topic_alias_maximum: (cl.spec.topic_alias_maximum > 0)
                    .then_some(cl.spec.topic_alias_maximum),
                ..ConnectProperties::default()
            }
        } else {
            ConnectProperties::default()
        };
        let connect = Packet::from(Connect {
            protocol_version: cl.spec.version,
            bridge: false,
            clean_start: clean,
            keep_alive: cl.spec.keep_alive,
            properties,
            client_id: cl.id.clone(),
            will,
            username: None,
            password: None,
        });
        let generation = cl.generation;
        self.push(Ev::Connect {
            client: c,
            link,
            clean,
        });
        self.client_send(c, &connect);
        let at = now + self.latency();
        self.schedule(at, Event::LinkOpen(link));
        self.schedule(now + TICK, Event::Client(c, generation, ClientTimer::Tick));
        if let Some((_, every)) = self.clients[c].spec.slow_reader {
            self.schedule(now + every, Event::Client(c, generation, ClientTimer::Read));
        }
    }

    /// The client gives up its connection (or learns it is gone) and retries later.
    pub fn client_lost(&mut self, c: usize, why: &'static str) {
        let delay = {
            let cl = &mut self.clients[c];
            cl.attempts = (cl.attempts + 1).min(10);
            let base = (20 * MS) << cl.attempts.min(7);
            base.min(2 * SEC) / 2 + cl.rng.below(base.min(2 * SEC))
        };
        self.client_close(c, why, delay);
    }

    fn client_close(&mut self, c: usize, why: &'static str, delay: u64) {
        let Some(link) = self.clients[c].link.take() else {
            return;
        };
        self.push(Ev::Lost { client: c, why });
        let cl = &mut self.clients[c];
        cl.state = ConnState::Idle;
        cl.generation += 1;
        cl.rx.clear();
        cl.sock.clear();
        cl.owed.clear();
        cl.ping_sent = None;
        cl.reconnect_gen += 1;
        let generation = cl.reconnect_gen;
        if let Some(l) = self.links.get_mut(&link) {
            l.up.fin = true;
            l.down.close();
        }
        self.kick(link, true);
        self.link_drained(link);
        self.cleanup(link);
        let delay = if self.phase == Phase::Workload {
            delay
        } else {
            delay.min(100 * MS)
        };
        let at = self.now + delay;
        self.schedule(at, Event::Client(c, generation, ClientTimer::Reconnect));
    }

    /// Encodes a packet onto the client's connection.
    fn client_send(&mut self, c: usize, packet: &Packet) {
        let Some(link) = self.clients[c].link else {
            return;
        };
        let cl = &mut self.clients[c];
        let mut buf = BytesMut::new();
        if let Err(e) = packet.encode(cl.spec.version, &mut buf) {
            return self.fail("client packets encode", format!("c{c}: {e}"));
        }
        cl.last_sent = self.now;
        self.push(Ev::Send {
            client: c,
            pkt: summary(packet),
        });
        match packet {
            // A retained clear has no payload, so no tag: the checker knows it from the owner.
            Packet::Publish(p) => {
                if let Ok((_, tag)) = payload::parse(&p.payload) {
                    self.checker.sent(tag);
                }
            }
            Packet::Subscribe(s) => {
                for sub in &s.subscriptions {
                    self.checker.subscribe_sent(c, &sub.filter, sub.options.qos);
                }
            }
            Packet::Unsubscribe(u) => {
                for f in &u.filters {
                    self.checker.unsubscribe_sent(c, f);
                }
            }
            _ => {}
        }
        if let Some(l) = self.links.get_mut(&link) {
            l.up.write(buf.freeze());
        }
        self.kick(link, true);
    }

    fn client_tick(&mut self, c: usize) {
        let now = self.now;
        let cl = &self.clients[c];
        let generation = cl.generation;
        match cl.state {
            ConnState::Idle => return,
            ConnState::AwaitConnAck => {
                if now > cl.connect_sent_at + CONNACK_TIMEOUT {
                    return self.client_lost(c, "no CONNACK in time");
                }
            }
            ConnState::Connected => {
                let ka = u64::from(cl.keep_alive) * SEC;
                if ka > 0 {
                    match cl.ping_sent {
                        Some(t) if now > t + ka + 2 * SEC => {
                            return self.client_lost(c, "no PINGRESP in time");
                        }
                        None if now >= cl.last_sent + ka * 3 / 4 => {
                            self.clients[c].ping_sent = Some(now);
                            self.client_send(c, &Packet::PingReq);
                        }
                        _ => {}
                    }
                }
            }
        }
        self.schedule(now + TICK, Event::Client(c, generation, ClientTimer::Tick));
    }

    // --- Receiving -------------------------------------------------------------------------------

    pub fn client_bytes(&mut self, c: usize, link: LinkId, bytes: Bytes) {
        let cl = &mut self.clients[c];
        if cl.link != Some(link) {
            return;
        }
        if cl.spec.slow_reader.is_some() {
            cl.sock.extend_from_slice(&bytes);
        } else {
            cl.rx.extend_from_slice(&bytes);
            self.process_rx(c);
        }
    }

    pub fn client_eof(&mut self, c: usize, link: LinkId) {
        if self.clients[c].link == Some(link) {
            self.client_lost(c, "the broker closed the connection");
        }
    }

    /// A slow reader reads up to its budget from its socket.
    fn client_read(&mut self, c: usize) {
        let Some((budget, every)) = self.clients[c].spec.slow_reader else {
            return;
        };
        let generation = self.clients[c].generation;
        // Once faults heal, slow readers catch up.
        let budget = if self.phase == Phase::Workload {
            budget
        } else {
            usize::MAX
        };
        let cl = &mut self.clients[c];
        let n = budget.min(cl.sock.len());
        let read = cl.sock.split_to(n);
        cl.rx.extend_from_slice(&read);
        self.process_rx(c);
        if self.clients[c].generation == generation {
            if let Some(link) = self.clients[c].link {
                self.link_drained(link);
            }
            let at = self.now + every;
            self.schedule(at, Event::Client(c, generation, ClientTimer::Read));
        }
    }

    /// Handles every whole packet read.
    fn process_rx(&mut self, c: usize) {
        let generation = self.clients[c].generation;
        while self.clients[c].generation == generation {
            let cl = &mut self.clients[c];
            let max = cl.max_receive();
            match codec::decode_from(&mut cl.rx, cl.spec.version, max) {
                Ok(Some(packet)) => {
                    self.on_packet(c, packet);
                    if self.checker.failed() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    return self.fail(
                        "the broker sends valid packets within the client's limits",
                        format!("c{c} cannot decode what the broker sent: {e}"),
                    );
                }
            }
        }
    }

    fn on_packet(&mut self, c: usize, packet: Packet) {
        self.push(Ev::Recv {
            client: c,
            pkt: summary(&packet),
        });
        if matches!(
            packet,
            Packet::Publish(_)
                | Packet::PubAck(_)
                | Packet::PubRec(_)
                | Packet::PubComp(_)
                | Packet::SubAck(_)
        ) {
            self.progress += 1;
        }
        let state = self.clients[c].state;
        if state == ConnState::AwaitConnAck {
            return match packet {
                Packet::ConnAck(ack) => self.on_connack(c, *ack),
                other => self.fail(
                    "protocol",
                    format!("c{c} got {:?} before CONNACK", summary(&other).kind),
                ),
            };
        }
        match packet {
            Packet::Publish(p) => self.on_publish(c, p),
            Packet::PubAck(a) => {
                let cl = &mut self.clients[c];
                let pid = a.packet_id.get();
                if cl.out.get(&pid).is_some_and(|m| m.stage == Stage::Puback) {
                    let m = cl.out.remove(&pid).expect("out");
                    if !a.reason.is_error() {
                        self.checker.acked(m.tag, &m.topic);
                    }
                }
            }
            Packet::PubRec(r) => {
                let cl = &mut self.clients[c];
                let pid = r.packet_id.get();
                match cl.out.get(&pid).map(|m| m.stage) {
                    Some(Stage::Pubrec) if r.reason.is_error() => {
                        cl.out.remove(&pid);
                    }
                    Some(Stage::Pubrec) => {
                        let m = cl.out.get_mut(&pid).expect("out");
                        m.stage = Stage::Pubcomp;
                        let (tag, topic) = (m.tag, m.topic.clone());
                        self.checker.acked(tag, &topic);
                        self.client_send(c, &Packet::PubRel(PubRel::success(r.packet_id)));
                    }
                    Some(Stage::Pubcomp) => {
                        self.client_send(c, &Packet::PubRel(PubRel::success(r.packet_id)));
                    }
                    _ => {}
                }
            }
            Packet::PubComp(p) => {
                let cl = &mut self.clients[c];
                let pid = p.packet_id.get();
                if cl.out.get(&pid).is_some_and(|m| m.stage == Stage::Pubcomp) {
                    cl.out.remove(&pid);
                }
            }
            Packet::PubRel(r) => {
                self.clients[c].inbound_qos2.remove(&r.packet_id.get());
                self.owe(c, Packet::PubComp(PubComp::success(r.packet_id)));
            }
            Packet::SubAck(s) => {
                let Some(filters) = self.clients[c].pending_sub.remove(&s.packet_id.get()) else {
                    return;
                };
                if s.reasons.len() != filters.len() {
                    return self.fail(
                        "protocol",
                        format!(
                            "c{c}: SUBACK with {} reasons for {}",
                            s.reasons.len(),
                            filters.len()
                        ),
                    );
                }
                for ((filter, qos), reason) in filters.iter().zip(&s.reasons) {
                    let granted = match reason {
                        SubAckReason::GrantedQoS0 => Some(QoS::AtMostOnce),
                        SubAckReason::GrantedQoS1 => Some(QoS::AtLeastOnce),
                        SubAckReason::GrantedQoS2 => Some(QoS::ExactlyOnce),
                        _ => None,
                    };
                    match granted {
                        Some(g) if g == *qos => self.checker.sub_acked(c, filter, g),
                        _ => {
                            return self.fail(
                                "subscriptions are granted",
                                format!("c{c} asked for {filter} at {qos:?}, got {reason:?}"),
                            );
                        }
                    }
                }
                self.clients[c].subs_done = true;
            }
            Packet::UnsubAck(u) => {
                self.clients[c].pending_unsub.remove(&u.packet_id.get());
            }
            Packet::PingResp => self.clients[c].ping_sent = None,
            Packet::Disconnect(d) => {
                let expected = matches!(
                    d.reason,
                    DisconnectReason::KeepAliveTimeout
                        | DisconnectReason::SessionTakenOver
                        | DisconnectReason::ServerShuttingDown
                );
                if !expected {
                    return self.fail(
                        "no protocol errors between correct peers",
                        format!("c{c} got DISCONNECT {:?}", d.reason),
                    );
                }
                self.client_lost(c, "DISCONNECT from the broker");
            }
            other => self.fail(
                "protocol",
                format!("c{c} got an unexpected {}", summary(&other).kind),
            ),
        }
    }

    fn on_connack(&mut self, c: usize, ack: codec::ConnAck) {
        let now = self.now;
        let max_packet = self.params.hosts[self.clients[c].spec.host]
            .config
            .max_packet_size;
        if ack.reason != ConnectReason::Success {
            return self.fail(
                "connections are accepted",
                format!("c{c} was refused: {:?}", ack.reason),
            );
        }
        let cl = &mut self.clients[c];
        let present = ack.session_present;
        if cl.sent_clean && present {
            return self.fail(
                "session present follows clean start",
                format!("c{c} asked for a clean start and got session present 1"),
            );
        }
        if !cl.sent_clean && cl.have_session && !present {
            match cl.spec.session {
                SessionKind::Persistent => {
                    return self.fail(
                        "persistent sessions survive",
                        format!("c{c}'s session, which never expires, is gone (session present 0)"),
                    );
                }
                SessionKind::Expiring(secs) => {
                    // The session expires `secs` after the broker lost its last connection
                    // (closed it, was told it closed, or crashed), in the broker's whole
                    // milliseconds; it was decided before this CONNACK arrived.
                    if let Some(link) = cl.attached {
                        let lost = self.conn_end.get(&link).copied();
                        let expiry = lost.map(|t| t / MS * MS + u64::from(secs) * SEC);
                        if expiry.is_none_or(|e| now < e) {
                            let detail = match lost {
                                Some(t) => format!(
                                    "c{c}'s session (expiry {secs} s) is gone {} ms after the broker lost its connection at {}",
                                    (now - t) / MS,
                                    crate::trace::fmt_time(t).trim()
                                ),
                                None => format!(
                                    "c{c}'s session (expiry {secs} s) is gone while its connection is open"
                                ),
                            };
                            return self.fail("sessions last until they expire", detail);
                        }
                    }
                }
                SessionKind::Clean => {}
            }
        }
        // An earlier attempt whose CONNACK never arrived may have found the session expired
        // and started a new one, which this CONNACK then calls present: no client can tell
        // that from its own session, and what it resends may be taken in twice.
        let ambiguous = matches!(cl.spec.session, SessionKind::Expiring(_)) && cl.unconfirmed > 1;
        cl.unconfirmed = 0;
        cl.state = ConnState::Connected;
        cl.attempts = 0;
        cl.fresh = false;
        cl.attached = cl.link;
        cl.pending_sub.clear();
        cl.pending_unsub.clear();
        let props = &ack.properties;
        cl.server_receive_max = props
            .receive_maximum
            .map_or(usize::from(u16::MAX), |n| usize::from(n.get()));
        cl.server_max_packet = props
            .maximum_packet_size
            .map_or(max_packet, NonZeroU32::get)
            .min(max_packet);
        cl.keep_alive = props.server_keep_alive.unwrap_or(cl.spec.keep_alive);
        let epoch;
        if present && cl.have_session {
            epoch = (self.checker.clients[c].epochs.len() as u32).saturating_sub(1);
        } else {
            // Session present 0; or 1 for a session an earlier attempt created, whose CONNACK
            // never arrived: either way a session this client knows nothing of.
            // The session state is gone on both sides: what was unacknowledged may or may
            // not have been delivered, and is owed to nobody.
            cl.out.clear();
            cl.inbound_qos2.clear();
            cl.unacked_qos1.clear();
            cl.subs_done = false;
            cl.active = cl
                .spec
                .filters
                .iter()
                .map(|(f, q)| (ByteString::from(*f), *q))
                .collect();
            // A 3.1.1 clean session lasts as long as its connection, also for a client that
            // asked for one to start afresh; MQTT 5 clean start begins a session that lasts.
            let lasting = !cl.sent_clean || cl.spec.version.is_v5();
            cl.have_session = cl.spec.session != SessionKind::Clean && lasting;
            let entitled = cl.spec.session == SessionKind::Persistent && lasting;
            epoch = self.checker.new_epoch(c, entitled);
        }
        self.push(Ev::ConnAck {
            client: c,
            present,
            epoch,
        });
        if present {
            // Resend what is in flight, in the order first sent [MQTT-4.4.0-1].
            let mut resend: Vec<(u16, OutMsg)> = self.clients[c]
                .out
                .iter()
                .map(|(p, m)| (*p, m.clone()))
                .collect();
            resend.sort_by_key(|(_, m)| m.order);
            for (pid, m) in resend {
                let pid = PacketId::new(pid).expect("non-zero");
                if ambiguous && m.stage == Stage::Pubrec {
                    self.checker.may_repeat(m.tag);
                }
                let packet = match m.stage {
                    Stage::Pubcomp => Packet::PubRel(PubRel::success(pid)),
                    _ => Packet::Publish(Publish {
                        dup: true,
                        qos_pid: QosPid::new(m.qos, pid),
                        retain: m.retain,
                        topic: m.topic.clone(),
                        properties: PublishProperties {
                            message_expiry_interval: m.expiry,
                            ..PublishProperties::default()
                        },
                        payload: m.payload.clone(),
                    }),
                };
                self.client_send(c, &packet);
            }
        }
        self.subscribe_all(c);
    }

    /// Subscribes to every filter this client means to hold, unless the session has them.
    fn subscribe_all(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        if cl.subs_done || !cl.pending_sub.is_empty() {
            return;
        }
        if cl.active.is_empty() {
            cl.subs_done = true;
            return;
        }
        let filters: Vec<(ByteString, QoS)> =
            cl.active.iter().map(|(f, q)| (f.clone(), *q)).collect();
        self.send_subscribe(c, filters);
    }

    fn send_subscribe(&mut self, c: usize, filters: Vec<(ByteString, QoS)>) {
        let cl = &mut self.clients[c];
        let pid = cl.alloc_pid();
        cl.pending_sub.insert(pid.get(), filters.clone());
        let packet = Packet::Subscribe(Subscribe {
            packet_id: pid,
            properties: SubscribeProperties::default(),
            subscriptions: filters
                .into_iter()
                .map(|(filter, qos)| Subscription {
                    filter,
                    options: SubscriptionOptions::new(qos),
                })
                .collect(),
        });
        self.client_send(c, &packet);
    }

    fn on_publish(&mut self, c: usize, mut p: Publish) {
        let qos = p.qos_pid.qos();
        let cl = &mut self.clients[c];
        // A topic alias stands for the topic it was last sent with on this connection, never 0
        // and never above the maximum the client announced [MQTT-3.3.2-8] [MQTT-3.3.2-11] (5.0).
        if let Some(alias) = p.properties.topic_alias {
            let max = cl.spec.topic_alias_maximum;
            if alias.get() > max {
                return self.fail(
                    "topic aliases within the client's maximum",
                    format!("c{c} got topic alias {alias}, its maximum is {max}"),
                );
            }
            if p.topic.is_empty() {
                match cl.aliases.get(&alias.get()) {
                    Some(topic) => p.topic = topic.clone(),
                    None => {
                        return self.fail(
                            "topic aliases stand for a topic",
                            format!("c{c} got topic alias {alias}, never set on this connection"),
                        );
                    }
                }
            } else {
                cl.aliases.insert(alias.get(), p.topic.clone());
            }
        }
        let accepted = match p.qos_pid {
            QosPid::AtMostOnce => true,
            QosPid::AtLeastOnce(pid) => {
                if !p.dup && !cl.unacked_qos1.insert(pid.get()) {
                    return self.fail(
                        "packet ids are not reused while in flight",
                        format!(
                            "c{c} got a new QoS 1 PUBLISH with pid {pid}, not yet acknowledged"
                        ),
                    );
                }
                self.owe(c, Packet::PubAck(PubAck::success(pid)));
                true
            }
            QosPid::ExactlyOnce(pid) => {
                let fresh = cl.inbound_qos2.insert(pid.get());
                if !fresh && !p.dup {
                    return self.fail(
                        "packet ids are not reused while in flight",
                        format!(
                            "c{c} got a new QoS 2 PUBLISH with pid {pid}, still awaiting PUBREL"
                        ),
                    );
                }
                self.owe(c, Packet::PubRec(PubRec::success(pid)));
                fresh
            }
        };
        self.checker.received(
            c,
            &p.topic,
            &p.payload,
            qos,
            p.dup,
            p.retain,
            accepted,
            p.properties.message_expiry_interval,
        );
    }

    /// An acknowledgement to send, now or after the client's acknowledgement delay, in order.
    fn owe(&mut self, c: usize, packet: Packet) {
        let cl = &mut self.clients[c];
        let max = cl.spec.ack_delay_max;
        if max == 0 && cl.owed.is_empty() {
            return self.send_ack(c, packet);
        }
        cl.owed.push_back(packet);
        if cl.owed.len() == 1 {
            let at = self.now + cl.rng.range(0, max);
            let generation = cl.generation;
            self.schedule(at, Event::Client(c, generation, ClientTimer::AckDue));
        }
    }

    fn flush_owed(&mut self, c: usize) {
        while let Some(p) = self.clients[c].owed.pop_front() {
            self.send_ack(c, p);
        }
    }

    fn send_ack(&mut self, c: usize, packet: Packet) {
        if let Packet::PubAck(a) = &packet {
            self.clients[c].unacked_qos1.remove(&a.packet_id.get());
        }
        self.client_send(c, &packet);
    }

    // --- The workload ----------------------------------------------------------------------------

    fn client_act(&mut self, c: usize) {
        if self.phase != Phase::Workload {
            return;
        }
        let mean = self.clients[c].spec.act_mean;
        let at = self.now + self.clients[c].rng.exp(mean);
        self.schedule(at, Event::Client(c, 0, ClientTimer::Act));
        if self.clients[c].state != ConnState::Connected {
            return;
        }
        let spec = self.clients[c].spec.clone();
        if spec.retained_owner && self.clients[c].rng.chance(0.3) {
            self.publish_retained(c);
        }
        if spec.publisher {
            self.publish_normal(c);
        }
        let rng = &mut self.clients[c].rng;
        if rng.chance(spec.p_resubscribe) {
            self.resubscribe(c);
        } else if spec.session != SessionKind::Clean && rng.chance(spec.p_fresh) {
            self.clients[c].fresh = true;
            let pause = self.clients[c].rng.range(0, 500 * MS);
            self.disconnect(c, pause);
        } else if rng.chance(spec.p_disconnect) {
            let pause = self.pause(c, 5 * SEC);
            self.disconnect(c, pause);
        } else if rng.chance(spec.p_drop) {
            let pause = self.pause(c, 3 * SEC);
            self.client_close(c, "the client dropped the connection", pause);
        }
    }

    /// How long a client stays away after leaving: up to `max`, or for an expiring session
    /// often around its expiry interval (before and after it), where an early or a late expiry
    /// shows.
    fn pause(&mut self, c: usize, max: u64) -> u64 {
        let cl = &mut self.clients[c];
        match cl.spec.session {
            SessionKind::Expiring(secs) if cl.rng.chance(0.5) => {
                let interval = u64::from(secs) * SEC;
                cl.rng.range(interval * 3 / 10, interval * 13 / 10)
            }
            _ => cl.rng.log_range(MS, max),
        }
    }

    fn disconnect(&mut self, c: usize, pause: u64) {
        self.client_send(
            c,
            &Packet::Disconnect(Disconnect::new(DisconnectReason::NormalDisconnection)),
        );
        self.client_close(c, "the client disconnected", pause);
    }

    fn resubscribe(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        if !cl.subs_done || !cl.pending_sub.is_empty() {
            return;
        }
        let spec_filters: Vec<(&'static str, QoS)> = cl.spec.filters.clone();
        // Workers never leave their group.
        if !cl.spec.shared_worker && !cl.active.is_empty() && cl.rng.chance(0.5) {
            let keys: Vec<ByteString> = cl.active.keys().cloned().collect();
            let filter = keys[cl.rng.below(keys.len() as u64) as usize].clone();
            cl.active.remove(&filter);
            let pid = cl.alloc_pid();
            cl.pending_unsub.insert(pid.get());
            let packet = Packet::Unsubscribe(Unsubscribe {
                packet_id: pid,
                properties: UnsubscribeProperties::default(),
                filters: vec![filter],
            });
            return self.client_send(c, &packet);
        }
        let missing: Vec<(&'static str, QoS)> = spec_filters
            .into_iter()
            .filter(|(f, _)| !cl.active.contains_key(*f))
            .collect();
        if missing.is_empty() {
            return;
        }
        let (f, q) = missing[cl.rng.below(missing.len() as u64) as usize];
        cl.active.insert(ByteString::from(f), q);
        self.send_subscribe(c, vec![(ByteString::from(f), q)]);
    }

    /// A payload length for a PUBLISH that fits the broker's Maximum Packet Size.
    fn payload_len(&mut self, c: usize, topic: &str, qos: QoS) -> usize {
        let cl = &mut self.clients[c];
        let max = cl.server_max_packet as usize;
        let v5 = cl.spec.version.is_v5();
        let mut len = cl
            .rng
            .log_range(TAG_LEN as u64, cl.spec.max_payload.max(TAG_LEN) as u64)
            as usize;
        while len > TAG_LEN && publish_len(topic, qos, len, v5) > max {
            len = (len / 2).max(TAG_LEN);
        }
        len
    }

    fn publish_normal(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            [cl.rng.weighted(&cl.spec.qos_weights)];
        if qos != QoS::AtMostOnce && cl.out.len() >= cl.window() {
            return;
        }
        let topic = cl.rng.pick(cl.spec.topics);
        let expiry = cl
            .rng
            .chance(cl.spec.expiring_share)
            .then(|| cl.rng.range(1, 10) as u32);
        let len = self.payload_len(c, topic, qos);
        self.publish(
            c,
            Kind::Normal,
            topic.to_owned(),
            qos,
            false,
            Some(len),
            expiry,
        );
    }

    /// The next retained publish of an owner, one at a time.
    fn publish_retained(&mut self, c: usize) {
        let now = self.now;
        let cl = &mut self.clients[c];
        if cl.out.values().any(|m| m.retain) || now < cl.last_retained_at + 20 * MS {
            return;
        }
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][cl.rng.below(3) as usize];
        if qos != QoS::AtMostOnce && cl.out.len() >= cl.window() {
            return;
        }
        cl.last_retained_at = now;
        let topic = format!("r/{c}/{}", cl.rng.below(RETAINED_PER_OWNER as u64));
        let clear = cl.rng.chance(0.1);
        let len = if clear {
            None
        } else {
            Some(self.payload_len(c, &topic, qos))
        };
        self.publish(c, Kind::Retained, topic, qos, true, len, None);
    }

    /// Publishes a new message; `len` None is a retained clear (empty payload).
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &mut self,
        c: usize,
        kind: Kind,
        topic: String,
        qos: QoS,
        retain: bool,
        len: Option<usize>,
        expiry: Option<u32>,
    ) {
        let cl = &mut self.clients[c];
        cl.next_seq += 1;
        let tag = (c as u16, cl.next_seq);
        let payload = match len {
            Some(len) => payload::make(kind, tag, len),
            None => Bytes::new(),
        };
        if kind == Kind::Retained {
            self.checker.retained_op(&topic, tag, len.is_none());
        }
        if len.is_some() {
            self.checker
                .register(tag, kind, &topic, qos, payload.len(), expiry);
        }
        let cl = &mut self.clients[c];
        let topic = ByteString::from(topic);
        let qos_pid = if qos == QoS::AtMostOnce {
            QosPid::AtMostOnce
        } else {
            let pid = cl.alloc_pid();
            cl.next_order += 1;
            cl.out.insert(
                pid.get(),
                OutMsg {
                    tag,
                    topic: topic.clone(),
                    qos,
                    retain,
                    payload: payload.clone(),
                    expiry,
                    stage: if qos == QoS::AtLeastOnce {
                        Stage::Puback
                    } else {
                        Stage::Pubrec
                    },
                    order: cl.next_order,
                },
            );
            QosPid::new(qos, pid)
        };
        let packet = Packet::Publish(Publish {
            dup: false,
            qos_pid,
            retain,
            topic,
            properties: PublishProperties {
                message_expiry_interval: expiry,
                ..PublishProperties::default()
            },
            payload,
        });
        self.client_send(c, &packet);
    }
}
