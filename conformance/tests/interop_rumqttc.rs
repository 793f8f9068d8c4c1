//! Interoperability with the Rust client rumqttc: its MQTT 3.1.1 client (`rumqttc`) and its
//! MQTT 5.0 client (`rumqttc::v5`), each over TCP, TLS, WebSocket and WebSocket over TLS, run
//! four scenarios against a midge daemon of their own: publish and subscribe at every QoS,
//! retained messages, wills, and the resumption of a persistent session.
//!
//! rumqttc is driven through its synchronous API on the test's thread: requests go into the
//! client's queue and the connection is polled, with a deadline, until the event a step waits
//! for. Every protocol exchange therefore happens between real rumqttc code and the daemon.

use midge_conformance::interop::{InteropBroker, Transport};
use midge_conformance::names::Names;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long any one step (a connection, an acknowledgement, a delivery) may take.
const STEP_WAIT: Duration = Duration::from_secs(10);

/// How long nothing more must arrive for a delivery to count as complete (no duplicates).
const QUIET: Duration = Duration::from_millis(300);

/// Session Expiry Interval of MQTT 5 persistent sessions, in seconds: far longer than a test.
const SESSION_EXPIRY: u32 = 300;

/// Keep alive of every client: longer than a test, so no PINGREQ interleaves with the steps.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// An application message as a client received it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Message {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
}

impl Message {
    fn new(topic: &str, payload: &[u8], qos: u8, retain: bool) -> Message {
        Message {
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            qos,
            retain,
        }
    }
}

/// Whether a publication matches a subscription. MQTT 5 acknowledgements report it: reason code
/// 0x00 (Success) or 0x10 (No matching subscribers) in PUBACK and PUBREC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Subscribed,
    Nobody,
}

/// A will message a client registers when it connects.
#[derive(Debug, Clone)]
struct Will {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
}

/// How a client connects.
#[derive(Debug, Clone)]
struct Connect {
    client_id: String,
    /// A session that outlives the connection: clean session 0 (3.1.1), clean start 0 with a
    /// Session Expiry Interval (5.0). Otherwise a clean session that ends with the connection.
    persistent: bool,
    will: Option<Will>,
}

impl Connect {
    fn clean(client_id: String) -> Connect {
        Connect {
            client_id,
            persistent: false,
            will: None,
        }
    }

    fn persistent(client_id: String) -> Connect {
        Connect {
            persistent: true,
            ..Connect::clean(client_id)
        }
    }

    fn with_will(client_id: String, will: Will) -> Connect {
        Connect {
            will: Some(will),
            ..Connect::clean(client_id)
        }
    }
}

/// What the scenarios do with a client, implemented by both of rumqttc's protocol modules. Each
/// method returns once the broker has answered, and panics (failing the test) when the answer is
/// wrong or does not come within [`STEP_WAIT`].
trait MqttClient: Sized {
    /// Connects and returns the client with the Session Present flag of the CONNACK.
    fn connect(broker: &InteropBroker, transport: Transport, how: &Connect) -> (Self, bool);

    /// Subscribes to `filter` at `qos` and checks the SUBACK grants that QoS.
    fn subscribe(&mut self, filter: &str, qos: u8);

    /// Publishes and waits for the end of the exchange: PUBACK at QoS 1, PUBREC and PUBCOMP at
    /// QoS 2, the packet written at QoS 0. MQTT 5 acknowledgements must report `audience`.
    fn publish(&mut self, topic: &str, qos: u8, retain: bool, payload: &[u8], audience: Audience);

    /// The next application message delivered to this client.
    fn next_message(&mut self) -> Message;

    /// Checks that no further message arrives within [`QUIET`] and that the broker released
    /// (PUBREL) every QoS 2 message it delivered.
    fn assert_settled(&mut self);

    /// Sends DISCONNECT and waits for the broker to close the connection.
    fn disconnect(self);

    /// Closes the network connection without DISCONNECT, as when a device loses its link.
    fn drop_connection(self) {
        drop(self);
    }
}

/// Where rumqttc connects for `transport`: host (a URL for WebSockets), port and transport.
fn endpoint(broker: &InteropBroker, transport: Transport) -> (String, u16, rumqttc::Transport) {
    let port = broker.port(transport);
    match transport {
        Transport::Tcp => ("127.0.0.1".to_owned(), port, rumqttc::Transport::Tcp),
        // The certificate names localhost, the host of the broker's TLS URLs.
        Transport::Tls => (
            "localhost".to_owned(),
            port,
            rumqttc::Transport::tls_with_config(trust_test_ca(broker)),
        ),
        Transport::Ws => (broker.url(transport), port, rumqttc::Transport::Ws),
        Transport::Wss => (
            broker.url(transport),
            port,
            rumqttc::Transport::wss_with_config(trust_test_ca(broker)),
        ),
    }
}

/// A rustls configuration whose only trusted root is the test CA. It names the ring provider
/// explicitly, so it does not depend on which providers the features of the build enable.
fn trust_test_ca(broker: &InteropBroker) -> rumqttc::TlsConfiguration {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(broker.ca_file()).expect("read the test CA");
    for cert in certs {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a CA certificate rustls accepts");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions of the ring provider")
        .with_root_certificates(roots)
        .with_no_client_auth();
    rumqttc::TlsConfiguration::from(config)
}

/// Time left until `deadline`, or a failure naming what did not happen.
fn remaining(deadline: Instant, waiting_for: &str) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    assert!(!left.is_zero(), "no {waiting_for} within {STEP_WAIT:?}");
    left
}

/// The MQTT 3.1.1 client, `rumqttc`.
mod v311 {
    use super::*;
    use rumqttc::{
        Client, ConnectReturnCode, Connection, Event, LastWill, MqttOptions, Outgoing, Packet, QoS,
        RecvTimeoutError, SubscribeReasonCode,
    };

    pub struct Client311 {
        client: Client,
        connection: Connection,
        /// Messages that arrived while a step waited for something else.
        inbox: VecDeque<Message>,
        /// Packet ids of QoS 2 deliveries whose PUBREL has not arrived yet.
        unreleased: HashSet<u16>,
    }

    fn qos(level: u8) -> QoS {
        rumqttc::qos(level).expect("QoS 0, 1 or 2")
    }

    fn options(broker: &InteropBroker, transport: Transport, how: &Connect) -> MqttOptions {
        let (host, port, transport) = endpoint(broker, transport);
        let mut options = MqttOptions::new(&how.client_id, host, port);
        options
            .set_transport(transport)
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(!how.persistent);
        if let Some(will) = &how.will {
            options.set_last_will(LastWill::new(
                &will.topic,
                will.payload.clone(),
                qos(will.qos),
                false,
            ));
        }
        options
    }

    impl Client311 {
        /// The next event, which must come before `deadline` and not be a connection error.
        fn next_event(&mut self, deadline: Instant, waiting_for: &str) -> Event {
            match self
                .connection
                .recv_timeout(remaining(deadline, waiting_for))
            {
                Ok(Ok(event)) => {
                    self.note(&event);
                    event
                }
                Ok(Err(e)) => panic!("connection error while waiting for {waiting_for}: {e}"),
                Err(RecvTimeoutError::Timeout) => panic!("no {waiting_for} within {STEP_WAIT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("client closed"),
            }
        }

        /// Keeps what every step must see: deliveries and the release of QoS 2 ones.
        fn note(&mut self, event: &Event) {
            match event {
                Event::Incoming(Packet::Publish(p)) => {
                    if p.qos == QoS::ExactlyOnce {
                        assert!(
                            self.unreleased.insert(p.pkid),
                            "QoS 2 packet id {} delivered again before its PUBREL",
                            p.pkid
                        );
                    }
                    self.inbox.push_back(Message {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        qos: p.qos as u8,
                        retain: p.retain,
                    });
                }
                Event::Incoming(Packet::PubRel(rel)) => {
                    self.unreleased.remove(&rel.pkid);
                }
                _ => {}
            }
        }

        /// Polls until `pick` accepts an event, within [`STEP_WAIT`].
        fn wait_for<T>(
            &mut self,
            waiting_for: &str,
            mut pick: impl FnMut(&Event) -> Option<T>,
        ) -> T {
            let deadline = Instant::now() + STEP_WAIT;
            loop {
                let event = self.next_event(deadline, waiting_for);
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
        }
    }

    impl MqttClient for Client311 {
        fn connect(broker: &InteropBroker, transport: Transport, how: &Connect) -> (Self, bool) {
            let (client, connection) = Client::new(options(broker, transport, how), 10);
            let mut this = Client311 {
                client,
                connection,
                inbox: VecDeque::new(),
                unreleased: HashSet::new(),
            };
            let deadline = Instant::now() + STEP_WAIT;
            let event = this.next_event(deadline, "CONNACK");
            let Event::Incoming(Packet::ConnAck(connack)) = event else {
                panic!("expected CONNACK, got {event:?}");
            };
            assert_eq!(connack.code, ConnectReturnCode::Success, "{connack:?}");
            (this, connack.session_present)
        }

        fn subscribe(&mut self, filter: &str, level: u8) {
            self.client
                .subscribe(filter, qos(level))
                .expect("queue SUBSCRIBE");
            let codes = self.wait_for("SUBACK", |event| match event {
                Event::Incoming(Packet::SubAck(ack)) => Some(ack.return_codes.clone()),
                _ => None,
            });
            assert_eq!(codes, [SubscribeReasonCode::Success(qos(level))]);
        }

        fn publish(&mut self, topic: &str, level: u8, retain: bool, payload: &[u8], _: Audience) {
            self.client
                .publish(topic, qos(level), retain, payload.to_vec())
                .expect("queue PUBLISH");
            let pkid = self.wait_for("PUBLISH written", |event| match event {
                Event::Outgoing(Outgoing::Publish(pkid)) => Some(*pkid),
                _ => None,
            });
            match level {
                0 => {}
                1 => self.wait_for("PUBACK", |event| match event {
                    Event::Incoming(Packet::PubAck(ack)) if ack.pkid == pkid => Some(()),
                    _ => None,
                }),
                _ => self.wait_for("PUBCOMP", |event| match event {
                    Event::Incoming(Packet::PubComp(comp)) if comp.pkid == pkid => Some(()),
                    _ => None,
                }),
            }
        }

        fn next_message(&mut self) -> Message {
            if self.inbox.is_empty() {
                self.wait_for("PUBLISH", |event| {
                    matches!(event, Event::Incoming(Packet::Publish(_))).then_some(())
                });
            }
            self.inbox.pop_front().expect("a delivered message")
        }

        fn assert_settled(&mut self) {
            let end = Instant::now() + QUIET;
            while let Some(left) = end.checked_duration_since(Instant::now()) {
                match self.connection.recv_timeout(left) {
                    Ok(Ok(event)) => self.note(&event),
                    Ok(Err(e)) => panic!("connection error: {e}"),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => panic!("client closed"),
                }
            }
            assert_eq!(
                self.inbox.pop_front(),
                None,
                "a message beyond those expected"
            );
            assert!(
                self.unreleased.is_empty(),
                "QoS 2 deliveries without PUBREL: {:?}",
                self.unreleased
            );
        }

        fn disconnect(mut self) {
            self.client.disconnect().expect("queue DISCONNECT");
            self.wait_for("DISCONNECT written", |event| {
                matches!(event, Event::Outgoing(Outgoing::Disconnect)).then_some(())
            });
            wait_for_close(&mut self.connection);
        }
    }

    /// Polls until the broker closes the connection (a connection error), within [`STEP_WAIT`].
    fn wait_for_close(connection: &mut Connection) {
        let deadline = Instant::now() + STEP_WAIT;
        loop {
            match connection.recv_timeout(remaining(deadline, "close after DISCONNECT")) {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    panic!("PUBLISH after DISCONNECT: {p:?}")
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return,
                Err(e) => panic!("no close after DISCONNECT: {e:?}"),
            }
        }
    }
}

/// The MQTT 5.0 client, `rumqttc::v5`.
mod v5 {
    use super::*;
    use rumqttc::Outgoing;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{
        ConnectReturnCode, LastWill, Packet, PubAckReason, PubCompReason, PubRecReason,
        SubscribeReasonCode,
    };
    use rumqttc::v5::{Client, Connection, Event, MqttOptions, RecvTimeoutError};

    pub struct Client5 {
        client: Client,
        connection: Connection,
        /// Messages that arrived while a step waited for something else.
        inbox: VecDeque<Message>,
        /// Packet ids of QoS 2 deliveries whose PUBREL has not arrived yet.
        unreleased: HashSet<u16>,
    }

    fn qos(level: u8) -> QoS {
        rumqttc::v5::mqttbytes::qos(level).expect("QoS 0, 1 or 2")
    }

    fn options(broker: &InteropBroker, transport: Transport, how: &Connect) -> MqttOptions {
        let (host, port, transport) = endpoint(broker, transport);
        let mut options = MqttOptions::new(&how.client_id, host, port);
        options
            .set_transport(transport)
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_start(!how.persistent);
        if how.persistent {
            options.set_session_expiry_interval(Some(SESSION_EXPIRY));
        }
        if let Some(will) = &how.will {
            options.set_last_will(LastWill::new(
                &will.topic,
                will.payload.clone(),
                qos(will.qos),
                false,
                None,
            ));
        }
        options
    }

    impl Client5 {
        /// The next event, which must come before `deadline` and not be a connection error.
        fn next_event(&mut self, deadline: Instant, waiting_for: &str) -> Event {
            match self
                .connection
                .recv_timeout(remaining(deadline, waiting_for))
            {
                Ok(Ok(event)) => {
                    self.note(&event);
                    event
                }
                Ok(Err(e)) => panic!("connection error while waiting for {waiting_for}: {e}"),
                Err(RecvTimeoutError::Timeout) => panic!("no {waiting_for} within {STEP_WAIT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("client closed"),
            }
        }

        /// Keeps what every step must see: deliveries and the release of QoS 2 ones.
        fn note(&mut self, event: &Event) {
            match event {
                Event::Incoming(Packet::Publish(p)) => {
                    if p.qos == QoS::ExactlyOnce {
                        assert!(
                            self.unreleased.insert(p.pkid),
                            "QoS 2 packet id {} delivered again before its PUBREL",
                            p.pkid
                        );
                    }
                    self.inbox.push_back(Message {
                        topic: String::from_utf8(p.topic.to_vec()).expect("UTF-8 topic"),
                        payload: p.payload.to_vec(),
                        qos: p.qos as u8,
                        retain: p.retain,
                    });
                }
                Event::Incoming(Packet::PubRel(rel)) => {
                    self.unreleased.remove(&rel.pkid);
                }
                _ => {}
            }
        }

        /// Polls until `pick` accepts an event, within [`STEP_WAIT`].
        fn wait_for<T>(
            &mut self,
            waiting_for: &str,
            mut pick: impl FnMut(&Event) -> Option<T>,
        ) -> T {
            let deadline = Instant::now() + STEP_WAIT;
            loop {
                let event = self.next_event(deadline, waiting_for);
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
        }
    }

    impl MqttClient for Client5 {
        fn connect(broker: &InteropBroker, transport: Transport, how: &Connect) -> (Self, bool) {
            let (client, connection) = Client::new(options(broker, transport, how), 10);
            let mut this = Client5 {
                client,
                connection,
                inbox: VecDeque::new(),
                unreleased: HashSet::new(),
            };
            let deadline = Instant::now() + STEP_WAIT;
            let event = this.next_event(deadline, "CONNACK");
            let Event::Incoming(Packet::ConnAck(connack)) = event else {
                panic!("expected CONNACK, got {event:?}");
            };
            assert_eq!(connack.code, ConnectReturnCode::Success, "{connack:?}");
            (this, connack.session_present)
        }

        fn subscribe(&mut self, filter: &str, level: u8) {
            self.client
                .subscribe(filter, qos(level))
                .expect("queue SUBSCRIBE");
            let codes = self.wait_for("SUBACK", |event| match event {
                Event::Incoming(Packet::SubAck(ack)) => Some(ack.return_codes.clone()),
                _ => None,
            });
            assert_eq!(codes, [SubscribeReasonCode::Success(qos(level))]);
        }

        fn publish(
            &mut self,
            topic: &str,
            level: u8,
            retain: bool,
            payload: &[u8],
            audience: Audience,
        ) {
            self.client
                .publish(topic, qos(level), retain, payload.to_vec())
                .expect("queue PUBLISH");
            let pkid = self.wait_for("PUBLISH written", |event| match event {
                Event::Outgoing(Outgoing::Publish(pkid)) => Some(*pkid),
                _ => None,
            });
            match level {
                0 => {}
                1 => {
                    let reason = self.wait_for("PUBACK", |event| match event {
                        Event::Incoming(Packet::PubAck(ack)) if ack.pkid == pkid => {
                            Some(ack.reason)
                        }
                        _ => None,
                    });
                    let expected = match audience {
                        Audience::Subscribed => PubAckReason::Success,
                        Audience::Nobody => PubAckReason::NoMatchingSubscribers,
                    };
                    assert_eq!(reason, expected, "PUBACK reason code");
                }
                _ => {
                    let reason = self.wait_for("PUBREC", |event| match event {
                        Event::Incoming(Packet::PubRec(rec)) if rec.pkid == pkid => {
                            Some(rec.reason)
                        }
                        _ => None,
                    });
                    let expected = match audience {
                        Audience::Subscribed => PubRecReason::Success,
                        Audience::Nobody => PubRecReason::NoMatchingSubscribers,
                    };
                    assert_eq!(reason, expected, "PUBREC reason code");
                    let reason = self.wait_for("PUBCOMP", |event| match event {
                        Event::Incoming(Packet::PubComp(comp)) if comp.pkid == pkid => {
                            Some(comp.reason)
                        }
                        _ => None,
                    });
                    assert_eq!(reason, PubCompReason::Success, "PUBCOMP reason code");
                }
            }
        }

        fn next_message(&mut self) -> Message {
            if self.inbox.is_empty() {
                self.wait_for("PUBLISH", |event| {
                    matches!(event, Event::Incoming(Packet::Publish(_))).then_some(())
                });
            }
            self.inbox.pop_front().expect("a delivered message")
        }

        fn assert_settled(&mut self) {
            let end = Instant::now() + QUIET;
            while let Some(left) = end.checked_duration_since(Instant::now()) {
                match self.connection.recv_timeout(left) {
                    Ok(Ok(event)) => self.note(&event),
                    Ok(Err(e)) => panic!("connection error: {e}"),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => panic!("client closed"),
                }
            }
            assert_eq!(
                self.inbox.pop_front(),
                None,
                "a message beyond those expected"
            );
            assert!(
                self.unreleased.is_empty(),
                "QoS 2 deliveries without PUBREL: {:?}",
                self.unreleased
            );
        }

        fn disconnect(mut self) {
            self.client.disconnect().expect("queue DISCONNECT");
            self.wait_for("DISCONNECT written", |event| {
                matches!(event, Event::Outgoing(Outgoing::Disconnect)).then_some(())
            });
            wait_for_close(&mut self.connection);
        }
    }

    /// Polls until the broker closes the connection (a connection error), within [`STEP_WAIT`].
    fn wait_for_close(connection: &mut Connection) {
        let deadline = Instant::now() + STEP_WAIT;
        loop {
            match connection.recv_timeout(remaining(deadline, "close after DISCONNECT")) {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    panic!("PUBLISH after DISCONNECT: {p:?}")
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return,
                Err(e) => panic!("no close after DISCONNECT: {e:?}"),
            }
        }
    }
}

fn start_broker() -> InteropBroker {
    InteropBroker::start(env!("CARGO_BIN_EXE_midge-under-test"))
}

/// A subscriber on three topics at QoS 0, 1 and 2 receives a message published to each at the
/// same QoS, with its topic, payload and QoS, once.
fn publish_subscribe_every_qos<C: MqttClient>(transport: Transport) {
    let broker = start_broker();
    let names = Names::new();
    let topic = |level: u8| names.topic(&format!("qos{level}"));
    let (mut subscriber, _) =
        C::connect(&broker, transport, &Connect::clean(names.client_id("sub")));
    for level in 0..=2 {
        subscriber.subscribe(&topic(level), level);
    }
    let (mut publisher, _) =
        C::connect(&broker, transport, &Connect::clean(names.client_id("pub")));
    let mut expected = Vec::new();
    for level in 0..=2 {
        let payload = format!("at QoS {level} over {}", transport.name());
        publisher.publish(
            &topic(level),
            level,
            false,
            payload.as_bytes(),
            Audience::Subscribed,
        );
        expected.push(Message::new(
            &topic(level),
            payload.as_bytes(),
            level,
            false,
        ));
    }
    // Messages on different topics may arrive in any order.
    let mut received: Vec<Message> = (0..expected.len())
        .map(|_| subscriber.next_message())
        .collect();
    received.sort();
    expected.sort();
    assert_eq!(received, expected);
    subscriber.assert_settled();
    publisher.disconnect();
    subscriber.disconnect();
}

/// A message published with the retain flag reaches a client that subscribes afterwards, with
/// the retain flag set.
fn retained_message_reaches_later_subscriber<C: MqttClient>(transport: Transport) {
    let broker = start_broker();
    let names = Names::new();
    let topic = names.topic("retained");
    let (mut publisher, _) =
        C::connect(&broker, transport, &Connect::clean(names.client_id("pub")));
    publisher.publish(&topic, 1, true, b"last known state", Audience::Nobody);
    publisher.disconnect();

    let (mut subscriber, _) =
        C::connect(&broker, transport, &Connect::clean(names.client_id("sub")));
    subscriber.subscribe(&topic, 1);
    assert_eq!(
        subscriber.next_message(),
        Message::new(&topic, b"last known state", 1, true)
    );
    subscriber.assert_settled();
    subscriber.disconnect();
}

/// When a client with a will loses its connection without DISCONNECT, a subscriber to the will
/// topic receives the will message.
fn will_published_when_connection_drops<C: MqttClient>(transport: Transport) {
    let broker = start_broker();
    let names = Names::new();
    let will = Will {
        topic: names.topic("will"),
        payload: b"device offline".to_vec(),
        qos: 1,
    };
    let (mut subscriber, _) =
        C::connect(&broker, transport, &Connect::clean(names.client_id("sub")));
    subscriber.subscribe(&will.topic, 1);
    let how = Connect::with_will(names.client_id("dev"), will.clone());
    let (device, _) = C::connect(&broker, transport, &how);
    device.drop_connection();
    assert_eq!(
        subscriber.next_message(),
        Message::new(&will.topic, &will.payload, will.qos, false)
    );
    subscriber.assert_settled();
    subscriber.disconnect();
}

/// A persistent session subscribed at QoS 2 that disconnects gets, when it reconnects with the
/// same client id, Session Present and every QoS 1 and QoS 2 message published while it was
/// away: each exactly once, in the order of publication for each QoS.
fn persistent_session_resumes_with_queued_messages<C: MqttClient>(transport: Transport) {
    let broker = start_broker();
    let names = Names::new();
    let topic = names.topic("queued");
    let session = Connect::persistent(names.client_id("sub"));
    let (mut subscriber, present) = C::connect(&broker, transport, &session);
    assert!(!present, "Session Present for a client id never seen");
    subscriber.subscribe(&topic, 2);
    subscriber.disconnect();

    let (mut publisher, _) =
        C::connect(&broker, transport, &Connect::clean(names.client_id("pub")));
    let published: Vec<Message> = [(1, "first"), (2, "second"), (1, "third"), (2, "fourth")]
        .into_iter()
        .map(|(level, payload)| Message::new(&topic, payload.as_bytes(), level, false))
        .collect();
    for message in &published {
        // The offline session's subscription matches.
        publisher.publish(
            &message.topic,
            message.qos,
            false,
            &message.payload,
            Audience::Subscribed,
        );
    }
    publisher.disconnect();

    let (mut subscriber, present) = C::connect(&broker, transport, &session);
    assert!(present, "no Session Present on resuming the session");
    let received: Vec<Message> = (0..published.len())
        .map(|_| subscriber.next_message())
        .collect();
    subscriber.assert_settled();
    // Order is guaranteed per topic and QoS, not across QoS levels.
    for level in [1, 2] {
        let at = |messages: &[Message]| -> Vec<Message> {
            messages
                .iter()
                .filter(|m| m.qos == level)
                .cloned()
                .collect()
        };
        assert_eq!(at(&received), at(&published), "QoS {level} messages");
    }
    subscriber.disconnect();
}

/// The four scenarios for one client and transport, as a module of tests.
macro_rules! scenarios {
    ($($module:ident: $client:ty, $transport:expr;)*) => {$(
        mod $module {
            use super::*;

            #[test]
            fn publish_subscribe_every_qos() {
                super::publish_subscribe_every_qos::<$client>($transport);
            }

            #[test]
            fn retained_message_reaches_later_subscriber() {
                super::retained_message_reaches_later_subscriber::<$client>($transport);
            }

            #[test]
            fn will_published_when_connection_drops() {
                super::will_published_when_connection_drops::<$client>($transport);
            }

            #[test]
            fn persistent_session_resumes_with_queued_messages() {
                super::persistent_session_resumes_with_queued_messages::<$client>($transport);
            }
        }
    )*};
}

scenarios! {
    v311_tcp: v311::Client311, Transport::Tcp;
    v311_tls: v311::Client311, Transport::Tls;
    v311_ws: v311::Client311, Transport::Ws;
    v311_wss: v311::Client311, Transport::Wss;
    v5_tcp: v5::Client5, Transport::Tcp;
    v5_tls: v5::Client5, Transport::Tls;
    v5_ws: v5::Client5, Transport::Ws;
    v5_wss: v5::Client5, Transport::Wss;
}
