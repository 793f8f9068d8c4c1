//! A raw MQTT client for conformance tests, on midge-core's codec, over TCP or over WebSocket
//! (MQTT in binary WebSocket messages, section 6). It sends well-formed packets or any bytes at
//! all (malformed, partial, out of order), and receives decoded packets or the raw bytes of one.
//! Every wait has a deadline ([`WAIT`] for what must come, [`QUIET`] for what must not), so a
//! broker that misbehaves fails a test instead of hanging it.
//!
//! Packets that arrive while a test waits for a particular one (a PUBLISH while it waits for a
//! PUBACK) are kept for the next receive, in order.

use bytes::{Bytes, BytesMut};
use midge_core::codec::{
    ByteString, ConnAck, Connect, ConnectProperties, ConnectReason, DecodeError, Disconnect,
    DisconnectReason, MAX_PACKET_SIZE, Packet, PacketId, ProtocolVersion, PubAck, PubAckReason,
    PubComp, PubRec, PubRel, Publish, PublishProperties, QoS, QosPid, SubAck, Subscribe,
    SubscribeProperties, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
    UnsubscribeProperties, decode_from,
};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a test waits for something the broker must do.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to conclude that the broker sends nothing.
pub const QUIET: Duration = Duration::from_millis(300);

pub const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

/// Why no packet came.
#[derive(Debug)]
pub enum RecvError {
    /// Nothing within the time allowed.
    Timeout,
    /// The broker closed the connection (end of stream or reset).
    Closed,
    /// The stream failed otherwise.
    Io(io::Error),
    /// The broker sent bytes the codec refuses: a broker bug as far as the test is concerned.
    Decode(DecodeError),
}

/// A CONNECT with a clean start, keep alive 60 s and nothing optional.
pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol_version: version,
        bridge: false,
        clean_start: true,
        keep_alive: 60,
        properties: ConnectProperties::default(),
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
    }
}

/// A PUBLISH of `payload` to `topic`; `packet_id` is used for QoS 1 and 2 only.
pub fn publish_packet(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    packet_id: PacketId,
) -> Publish {
    Publish {
        dup: false,
        qos_pid: QosPid::new(qos, packet_id),
        retain,
        topic: ByteString::from(topic),
        properties: PublishProperties::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// A packet id from a number; panics on 0, which tests never mean to use this way.
pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("packet id 0 is not a packet id")
}

/// The bytes of `packet` as `version` encodes it.
pub fn encode(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.encode(version, &mut out).expect("encode");
    out.to_vec()
}

/// The connection under a client: MQTT directly over TCP, or in WebSocket messages over TCP.
#[derive(Debug)]
enum Link {
    Tcp(TcpStream),
    WebSocket(Box<tungstenite::WebSocket<TcpStream>>),
}

impl Link {
    fn tcp(&self) -> &TcpStream {
        match self {
            Link::Tcp(s) => s,
            Link::WebSocket(ws) => ws.get_ref(),
        }
    }

    /// Writes bytes: as they are over TCP, as one binary message over WebSocket.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Tcp(s) => {
                s.write_all(bytes)?;
                s.flush()
            }
            Link::WebSocket(ws) => ws
                .send(tungstenite::Message::binary(bytes.to_vec()))
                .map_err(ws_error),
        }
    }

    /// Reads what arrives within `timeout` into `buf`; `Ok(0)` when the connection has ended
    /// (over WebSocket also by a Close message or by a close without one).
    fn read(&mut self, buf: &mut BytesMut, timeout: Duration) -> io::Result<usize> {
        self.tcp()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        match self {
            Link::Tcp(s) => {
                let mut chunk = [0u8; 16 * 1024];
                let n = s.read(&mut chunk)?;
                buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Link::WebSocket(ws) => loop {
                match ws.read() {
                    Ok(tungstenite::Message::Binary(data)) if data.is_empty() => {}
                    Ok(tungstenite::Message::Binary(data)) => {
                        buf.extend_from_slice(&data);
                        return Ok(data.len());
                    }
                    Ok(tungstenite::Message::Close(_)) => return Ok(0),
                    Ok(tungstenite::Message::Text(_)) => {
                        return Err(io::Error::other(
                            "the broker sent a text WebSocket message [MQTT-6.0.0-1]",
                        ));
                    }
                    // Pings are answered by the WebSocket layer.
                    Ok(_) => {}
                    Err(
                        tungstenite::Error::ConnectionClosed
                        | tungstenite::Error::AlreadyClosed
                        | tungstenite::Error::Protocol(
                            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                        ),
                    ) => return Ok(0),
                    Err(e) => return Err(ws_error(e)),
                }
            },
        }
    }
}

/// A WebSocket error as the I/O error it is, or wraps.
fn ws_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        e => io::Error::other(e),
    }
}

/// A raw connection to the broker.
#[derive(Debug)]
pub struct RawClient {
    link: Link,
    /// The version packets are encoded and decoded in.
    pub version: ProtocolVersion,
    buf: BytesMut,
    kept: VecDeque<Packet>,
    next_id: u16,
}

impl RawClient {
    /// A TCP connection to `addr`; nothing is sent yet.
    pub fn open(addr: SocketAddr, version: ProtocolVersion) -> RawClient {
        RawClient::on(Link::Tcp(tcp(addr)), version)
    }

    /// The server's end of a TCP connection the broker under test opened: for tests in which
    /// the broker is the client (its bridges) and the test plays the remote server. Packets
    /// are decoded in `version`; the CONNECT that opens the connection decodes by its own.
    pub fn accepted(stream: TcpStream, version: ProtocolVersion) -> RawClient {
        stream.set_nodelay(true).expect("nodelay");
        stream.set_write_timeout(Some(WAIT)).expect("write timeout");
        RawClient::on(Link::Tcp(stream), version)
    }

    /// A WebSocket connection to `ws://addr/mqtt` offering the subprotocols `offered` (a
    /// comma-separated list, as the `Sec-WebSocket-Protocol` header has them); nothing is sent
    /// yet. Returns the client and the subprotocol the server selected, if it named one.
    /// A refused upgrade fails the test.
    pub fn open_websocket(
        addr: SocketAddr,
        version: ProtocolVersion,
        offered: &str,
    ) -> (RawClient, Option<String>) {
        let stream = tcp(addr);
        // The handshake is bounded by the stream's timeouts.
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let uri: tungstenite::http::Uri = format!("ws://{addr}/mqtt").parse().expect("URI");
        let request = tungstenite::ClientRequestBuilder::new(uri).with_sub_protocol(offered);
        let (ws, response) = match tungstenite::client(request, stream) {
            Ok(done) => done,
            Err(tungstenite::HandshakeError::Failure(e)) => {
                panic!("WebSocket upgrade at {addr} offering {offered:?} failed: {e}")
            }
            Err(tungstenite::HandshakeError::Interrupted(_)) => {
                panic!("WebSocket upgrade at {addr} not answered within {WAIT:?}")
            }
        };
        let selected = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        (
            RawClient::on(Link::WebSocket(Box::new(ws)), version),
            selected,
        )
    }

    fn on(link: Link, version: ProtocolVersion) -> RawClient {
        RawClient {
            link,
            version,
            buf: BytesMut::with_capacity(16 * 1024),
            kept: VecDeque::new(),
            next_id: 0,
        }
    }

    /// Connects with `connect` and checks the CONNACK accepts it.
    pub fn connect_with(addr: SocketAddr, connect: Connect) -> (RawClient, ConnAck) {
        let mut client = RawClient::open(addr, connect.protocol_version);
        let ack = client.handshake(connect);
        assert_eq!(
            ack.reason,
            ConnectReason::Success,
            "CONNACK refused: {ack:?}"
        );
        (client, ack)
    }

    /// Connects with a clean start as `client_id` and checks the CONNACK accepts it.
    pub fn connect(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> RawClient {
        RawClient::connect_with(addr, connect_packet(version, client_id)).0
    }

    /// Sends CONNECT and returns the CONNACK, whatever it says.
    pub fn handshake(&mut self, connect: Connect) -> ConnAck {
        self.send(&Packet::from(connect));
        self.expect_connack()
    }

    /// The next packet, which must be a CONNACK.
    pub fn expect_connack(&mut self) -> ConnAck {
        match self.recv() {
            Packet::ConnAck(ack) => *ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Sends a packet; a write error fails the test.
    pub fn send(&mut self, packet: &Packet) {
        let bytes = encode(packet, self.version);
        self.send_raw(&bytes)
            .unwrap_or_else(|e| panic!("cannot send {packet:?}: {e}"));
    }

    /// Sends bytes as they are; over WebSocket, in one binary message. The broker may already
    /// have closed the connection (it is allowed to on the first bad byte), so the error is the
    /// caller's to judge.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.link.write(bytes)
    }

    /// Sends a WebSocket message of any kind as it is (a text message, a message in several
    /// frames). Panics on a TCP connection.
    pub fn send_ws(&mut self, message: tungstenite::Message) -> io::Result<()> {
        match &mut self.link {
            Link::WebSocket(ws) => ws.send(message).map_err(ws_error),
            Link::Tcp(_) => panic!("a WebSocket message on a TCP connection"),
        }
    }

    /// A fresh packet id (1, 2, ...), unique on this connection.
    pub fn packet_id(&mut self) -> PacketId {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        pid(self.next_id)
    }

    /// The next packet, within `timeout`.
    pub fn try_recv(&mut self, timeout: Duration) -> Result<Packet, RecvError> {
        if let Some(p) = self.kept.pop_front() {
            return Ok(p);
        }
        self.read_packet(timeout)
    }

    fn read_packet(&mut self, timeout: Duration) -> Result<Packet, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            match decode_from(&mut self.buf, self.version, MAX_PACKET_SIZE) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(RecvError::Decode(e)),
            }
            self.read_more(deadline)?;
        }
    }

    /// Reads what arrives before `deadline` into the buffer (possibly nothing).
    fn read_more(&mut self, deadline: Instant) -> Result<(), RecvError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(RecvError::Timeout);
        }
        match self.link.read(&mut self.buf, deadline - now) {
            Ok(0) => Err(RecvError::Closed),
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                ) =>
            {
                Err(RecvError::Closed)
            }
            Err(e) => Err(RecvError::Io(e)),
        }
    }

    /// The bytes of the next packet exactly as the broker sent them (fixed header included),
    /// undecoded, within [`WAIT`]; for checks on the encoding itself. Packets already decoded
    /// and kept would come first, so there must be none.
    pub fn recv_packet_bytes(&mut self) -> Vec<u8> {
        assert!(
            self.kept.is_empty(),
            "packets already decoded come first: {:?}",
            self.kept
        );
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(len) = frame_len(&self.buf) {
                return self.buf.split_to(len).to_vec();
            }
            if let Err(e) = self.read_more(deadline) {
                panic!(
                    "expected a packet from the broker: {e:?} (received {:?})",
                    &self.buf[..]
                );
            }
        }
    }

    /// The next packet, within [`WAIT`].
    pub fn recv(&mut self) -> Packet {
        self.try_recv(WAIT)
            .unwrap_or_else(|e| panic!("expected a packet from the broker: {e:?}"))
    }

    /// Reads until a packet satisfies `want` (within [`WAIT`]); others are kept.
    pub fn recv_matching(&mut self, what: &str, mut want: impl FnMut(&Packet) -> bool) -> Packet {
        if let Some(i) = self.kept.iter().position(&mut want) {
            return self.kept.remove(i).expect("kept packet");
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_packet(left) {
                Ok(p) if want(&p) => return p,
                Ok(p) => self.kept.push_back(p),
                Err(e) => panic!(
                    "waiting for {what}: {e:?} (received meanwhile: {:?})",
                    self.kept
                ),
            }
        }
    }

    /// Checks that nothing arrives within [`QUIET`] and the connection stays open.
    pub fn expect_nothing(&mut self) {
        match self.try_recv(QUIET) {
            Err(RecvError::Timeout) => {}
            Ok(p) => panic!("expected nothing from the broker, got {p:?}"),
            Err(e) => panic!("expected the connection to stay open and quiet, got {e:?}"),
        }
    }

    /// Checks that the broker closes the connection within [`WAIT`], and returns what it sent
    /// before closing.
    pub fn expect_closed(&mut self) -> Vec<Packet> {
        let mut before: Vec<Packet> = self.kept.drain(..).collect();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_packet(left) {
                Ok(p) => before.push(p),
                Err(RecvError::Closed) => return before,
                // Whatever follows bytes the codec refuses does not matter: the test asks
                // only whether the connection ends, so keep reading raw bytes.
                Err(RecvError::Decode(_)) => {
                    self.buf.clear();
                    return self.drain_until_closed(deadline, before);
                }
                Err(e) => panic!(
                    "expected the broker to close the connection, got {e:?} (after {before:?})"
                ),
            }
        }
    }

    fn drain_until_closed(&mut self, deadline: Instant, before: Vec<Packet>) -> Vec<Packet> {
        loop {
            self.buf.clear();
            match self.read_more(deadline) {
                Ok(()) => {}
                Err(RecvError::Timeout) => {
                    panic!("expected the broker to close the connection (after {before:?})")
                }
                Err(_) => return before,
            }
        }
    }

    /// Checks that the broker closes the connection, sending nothing first: what MQTT 3.1.1
    /// requires on a protocol violation.
    pub fn expect_closed_silently(&mut self) {
        let before = self.expect_closed();
        assert!(
            before.is_empty(),
            "expected the connection closed without a packet, got {before:?}"
        );
    }

    /// Checks that the broker closes the connection after, at most, a DISCONNECT (MQTT 5)
    /// whose reason is one of `reasons`: a server closing on an error may send DISCONNECT
    /// first [MQTT-4.13.1-1] (5.0), and if it does, the reason must be the one the
    /// specification names.
    pub fn expect_disconnect(&mut self, reasons: &[DisconnectReason]) -> Option<DisconnectReason> {
        let before = self.expect_closed();
        match before.as_slice() {
            [] => None,
            [Packet::Disconnect(d)] if reasons.contains(&d.reason) => Some(d.reason),
            other => panic!(
                "expected the connection closed, after at most a DISCONNECT with one of \
                 {reasons:?}; got {other:?}"
            ),
        }
    }

    /// Checks that the broker refuses a CONNECT: a CONNACK with `reason` (the 3.1.1 return
    /// code `reason` maps to, for 3.1.1), then closure.
    pub fn expect_connack_refusal(&mut self, reason: ConnectReason) {
        let before = self.expect_closed();
        match before.as_slice() {
            [Packet::ConnAck(ack)] if ack.reason == reason => {}
            other => panic!("expected CONNACK {reason:?} then closure, got {other:?}"),
        }
    }

    /// Checks that the broker refuses a CONNECT: either closes at once, or sends a CONNACK with
    /// one of `reasons` first and then closes.
    pub fn expect_connect_refused(&mut self, reasons: &[ConnectReason]) {
        let before = self.expect_closed();
        match before.as_slice() {
            [] => {}
            [Packet::ConnAck(ack)] if reasons.contains(&ack.reason) => {}
            other => panic!(
                "expected closure, after at most a CONNACK with one of {reasons:?}; got {other:?}"
            ),
        }
    }

    /// Subscribes to each filter (with its options) in one SUBSCRIBE and returns the SUBACK,
    /// checking its packet id.
    pub fn subscribe_many(&mut self, subscriptions: &[(&str, SubscriptionOptions)]) -> SubAck {
        self.subscribe_with(SubscribeProperties::default(), subscriptions)
    }

    /// Subscribes as [`RawClient::subscribe_many`] does, with `properties` (an MQTT 5
    /// Subscription Identifier, User Properties).
    pub fn subscribe_with(
        &mut self,
        properties: SubscribeProperties,
        subscriptions: &[(&str, SubscriptionOptions)],
    ) -> SubAck {
        let packet_id = self.packet_id();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            properties,
            subscriptions: subscriptions
                .iter()
                .map(|(filter, options)| Subscription {
                    filter: ByteString::from(*filter),
                    options: *options,
                })
                .collect(),
        }));
        match self.recv_matching("SUBACK", |p| matches!(p, Packet::SubAck(_))) {
            Packet::SubAck(ack) => {
                assert_eq!(ack.packet_id, packet_id, "SUBACK's packet id");
                ack
            }
            _ => unreachable!(),
        }
    }

    /// Subscribes to `filter` at `qos` and checks it is granted at exactly `qos`.
    pub fn sub(&mut self, filter: &str, qos: QoS) {
        let ack = self.subscribe_many(&[(filter, SubscriptionOptions::new(qos))]);
        assert_eq!(
            ack.reasons,
            [midge_core::codec::SubAckReason::granted(qos)],
            "SUBACK for {filter}"
        );
    }

    /// Unsubscribes from `filters` in one UNSUBSCRIBE and returns the UNSUBACK.
    pub fn unsubscribe(&mut self, filters: &[&str]) -> UnsubAck {
        let packet_id = self.packet_id();
        self.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id,
            properties: UnsubscribeProperties::default(),
            filters: filters.iter().map(|f| ByteString::from(*f)).collect(),
        }));
        match self.recv_matching("UNSUBACK", |p| matches!(p, Packet::UnsubAck(_))) {
            Packet::UnsubAck(ack) => {
                assert_eq!(ack.packet_id, packet_id, "UNSUBACK's packet id");
                ack
            }
            _ => unreachable!(),
        }
    }

    /// Publishes and completes the QoS flow; returns the PUBACK or PUBREC reason (success for
    /// QoS 0, which has none).
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> PubAckReason {
        let packet_id = self.packet_id();
        self.send(&Packet::Publish(publish_packet(
            topic, payload, qos, retain, packet_id,
        )));
        match qos {
            QoS::AtMostOnce => PubAckReason::Success,
            QoS::AtLeastOnce => self.expect_puback(packet_id).reason,
            QoS::ExactlyOnce => {
                let rec = self.expect_pubrec(packet_id);
                if !rec.reason.is_error() {
                    self.send(&Packet::PubRel(PubRel::success(packet_id)));
                    self.expect_pubcomp(packet_id);
                }
                rec.reason
            }
        }
    }

    pub fn expect_puback(&mut self, id: PacketId) -> PubAck {
        match self.recv_matching(
            "PUBACK",
            |p| matches!(p, Packet::PubAck(a) if a.packet_id == id),
        ) {
            Packet::PubAck(a) => a,
            _ => unreachable!(),
        }
    }

    pub fn expect_pubrec(&mut self, id: PacketId) -> PubRec {
        match self.recv_matching(
            "PUBREC",
            |p| matches!(p, Packet::PubRec(a) if a.packet_id == id),
        ) {
            Packet::PubRec(a) => a,
            _ => unreachable!(),
        }
    }

    pub fn expect_pubrel(&mut self, id: PacketId) -> PubRel {
        match self.recv_matching(
            "PUBREL",
            |p| matches!(p, Packet::PubRel(a) if a.packet_id == id),
        ) {
            Packet::PubRel(a) => a,
            _ => unreachable!(),
        }
    }

    pub fn expect_pubcomp(&mut self, id: PacketId) -> PubComp {
        match self.recv_matching(
            "PUBCOMP",
            |p| matches!(p, Packet::PubComp(a) if a.packet_id == id),
        ) {
            Packet::PubComp(a) => a,
            _ => unreachable!(),
        }
    }

    /// The next packet, which must be a PUBLISH; it is not acknowledged.
    pub fn expect_publish(&mut self) -> Publish {
        match self.recv_matching("PUBLISH", |p| matches!(p, Packet::Publish(_))) {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    }

    /// Waits for a PUBLISH and acknowledges it as its QoS requires (the whole QoS 2 flow).
    pub fn recv_publish(&mut self) -> Publish {
        let p = self.expect_publish();
        self.acknowledge(&p);
        p
    }

    /// Acknowledges a received PUBLISH as its QoS requires (the whole QoS 2 flow).
    pub fn acknowledge(&mut self, p: &Publish) {
        match p.qos_pid {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(id) => self.send(&Packet::PubAck(PubAck::success(id))),
            QosPid::ExactlyOnce(id) => {
                self.send(&Packet::PubRec(PubRec::success(id)));
                self.expect_pubrel(id);
                self.send(&Packet::PubComp(PubComp::success(id)));
            }
        }
    }

    /// PINGREQ, then PINGRESP: a round trip proving the connection is alive and that the
    /// broker has handled everything sent before.
    pub fn ping(&mut self) {
        self.send(&Packet::PingReq);
        self.recv_matching("PINGRESP", |p| matches!(p, Packet::PingResp));
    }

    /// Sends a normal DISCONNECT and closes the socket.
    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::new(
            DisconnectReason::NormalDisconnection,
        )));
        let _ = self.link.tcp().shutdown(Shutdown::Write);
        // Wait for the broker's side to close, so that what the DISCONNECT does (discarding
        // the will, ending a clean session) has happened when the test goes on.
        let _ = self.expect_closed();
    }

    /// Drops the connection without DISCONNECT (a network failure, as the broker sees it).
    pub fn drop_connection(self) {
        let _ = self.link.tcp().shutdown(Shutdown::Both);
    }
}

/// A TCP connection to `addr` for a client.
fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT)
        .unwrap_or_else(|e| panic!("cannot connect to the broker at {addr}: {e}"));
    stream.set_nodelay(true).expect("nodelay");
    stream.set_write_timeout(Some(WAIT)).expect("write timeout");
    stream
}

/// The length of the packet at the start of `buf` (fixed header, Remaining Length and what it
/// counts) once all of it is there.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let mut remaining = 0usize;
    for (i, byte) in buf.iter().skip(1).take(4).enumerate() {
        remaining |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let len = 1 + (i + 1) + remaining;
            return (buf.len() >= len).then_some(len);
        }
    }
    None
}
