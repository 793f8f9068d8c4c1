//! The broker asks its authorizer who may connect and what each client may publish, subscribe
//! to and receive; these tests use a small rule-based authorizer to check that every decision is
//! asked for and obeyed, in both protocol generations.

mod harness;

use harness::*;
use midge_core::auth::{Access, Authorizer, ClientRef, ConnectDecision, ConnectRequest};
use midge_core::codec::{
    ByteString, ConnectReason, Packet, PubAckReason, QoS, SubAckReason, topic,
};
use std::collections::BTreeMap;

/// Users with passwords, and per-user topic rules: `(access, filter)` pairs that allow.
#[derive(Debug, Default, Clone)]
struct Rules {
    passwords: BTreeMap<String, String>,
    allow: Vec<(String, Access, String)>,
}

impl Rules {
    fn user(mut self, name: &str, password: &str) -> Rules {
        self.passwords.insert(name.into(), password.into());
        self
    }
    fn allow(mut self, user: &str, access: Access, filter: &str) -> Rules {
        self.allow.push((user.into(), access, filter.into()));
        self
    }
}

impl Authorizer for Rules {
    fn connect(&mut self, r: &ConnectRequest<'_>) -> ConnectDecision {
        match (r.username, r.password) {
            (Some(u), Some(p)) if self.passwords.get(u).is_some_and(|x| x.as_bytes() == p) => {
                ConnectDecision::Accept {
                    username: Some(ByteString::from(u)),
                }
            }
            (None, None) => ConnectDecision::Refuse(ConnectReason::NotAuthorized),
            _ => ConnectDecision::Refuse(ConnectReason::BadUserNameOrPassword),
        }
    }

    fn authorize(&self, c: &ClientRef<'_>, access: Access, name: &str) -> bool {
        self.allow.iter().any(|(user, a, filter)| {
            Some(user.as_str()) == c.username
                && *a == access
                && match access {
                    // A subscription is allowed for the exact filter granted, or anything under
                    // a grant of "#".
                    Access::Subscribe => filter == name || filter == "#",
                    _ => topic::matches(filter, name),
                }
        })
    }
}

fn world(rules: Rules) -> World {
    let mut w = World::default();
    w.broker.set_authorizer(Box::new(rules));
    w
}

fn login(version: ProtocolVersion, id: &str, user: &str, password: &'static str) -> Connect {
    let mut c = connect(version, id);
    c.username = Some(ByteString::from(user));
    c.password = Some(bytes::Bytes::from_static(password.as_bytes()));
    c
}

use midge_core::codec::{Connect, ProtocolVersion};

#[test]
fn refused_clients_get_the_reason_in_their_version() {
    let mut w = world(Rules::default().user("alice", "secret"));
    let (c, ack) = w.try_connect(login(V5, "c1", "alice", "wrong"));
    assert_eq!(ack.reason, ConnectReason::BadUserNameOrPassword);
    assert!(w.is_closed(c));
    let (c, ack) = w.try_connect(connect(V5, "c2"));
    assert_eq!(ack.reason, ConnectReason::NotAuthorized);
    assert!(w.is_closed(c));
    // 3.1.1 return codes 0x04 and 0x05 (3.1.1, 3.2.2.3).
    let (_, ack) = w.try_connect(login(V3_1_1, "c3", "alice", "wrong"));
    assert_eq!(ack.reason.v3_return_code(), 0x04);
    let (_, ack) = w.try_connect(connect(V3_1_1, "c4"));
    assert_eq!(ack.reason.v3_return_code(), 0x05);
    w.connect(login(V3_1_1, "c5", "alice", "secret"));
}

#[test]
fn a_client_that_fails_authentication_cannot_take_a_session_over() {
    let mut w = world(
        Rules::default()
            .user("alice", "secret")
            .allow("alice", Access::Subscribe, "t")
            .allow("alice", Access::Receive, "t")
            .allow("alice", Access::Publish, "t"),
    );
    let (first, _) = w.connect(login(V5, "device", "alice", "secret"));
    let (intruder, ack) = w.try_connect(login(V5, "device", "alice", "guess"));
    assert_eq!(ack.reason, ConnectReason::BadUserNameOrPassword);
    assert!(w.is_closed(intruder));
    assert!(!w.is_closed(first));
    w.subscribe(first, "t", QoS::AtMostOnce);
    w.send(first, &publish("t", b"still here", QoS::AtMostOnce, 0));
    assert_eq!(&as_publish(&w.recv_one(first)).payload[..], b"still here");
}

#[test]
fn publish_denied_is_acknowledged_with_0x87_in_v5_and_not_routed() {
    let mut w = world(
        Rules::default()
            .user("pub", "p")
            .user("sub", "s")
            .allow("pub", Access::Publish, "allowed/#")
            .allow("sub", Access::Subscribe, "#")
            .allow("sub", Access::Receive, "#"),
    );
    let (sub, _) = w.connect(login(V3_1_1, "sub", "sub", "s"));
    w.subscribe(sub, "#", QoS::ExactlyOnce);
    let (p5, _) = w.connect(login(V5, "p5", "pub", "p"));
    w.send(p5, &publish("secret/x", b"no", QoS::AtLeastOnce, 1));
    assert!(matches!(w.recv_one(p5), Packet::PubAck(a) if a.reason == PubAckReason::NotAuthorized));
    w.send(p5, &publish("secret/x", b"no", QoS::ExactlyOnce, 2));
    assert!(matches!(w.recv_one(p5), Packet::PubRec(r) if r.reason == PubAckReason::NotAuthorized));
    w.send(p5, &publish("secret/x", b"no", QoS::AtMostOnce, 0));
    w.recv_none(p5);
    w.send(p5, &publish("allowed/x", b"yes", QoS::AtMostOnce, 0));
    let got = w.recv(sub);
    assert_eq!(publishes(&got).len(), 1, "{got:?}");
    assert_eq!(&publishes(&got)[0].topic[..], "allowed/x");
    assert_eq!(w.broker.stats().publish_denied, 3);
}

#[test]
fn publish_denied_in_v3_is_acknowledged_normally_and_dropped() {
    let mut w = world(
        Rules::default()
            .user("pub", "p")
            .user("sub", "s")
            .allow("sub", Access::Subscribe, "#")
            .allow("sub", Access::Receive, "#"),
    );
    let (sub, _) = w.connect(login(V5, "sub", "sub", "s"));
    w.subscribe(sub, "#", QoS::ExactlyOnce);
    let (p3, _) = w.connect(login(V3_1_1, "p3", "pub", "p"));
    w.send(p3, &publish("t", b"no", QoS::AtLeastOnce, 1));
    assert_eq!(w.recv(p3), [puback(pid(1))]);
    // The QoS 2 exchange completes, so the client does not retry forever.
    w.send(p3, &publish("t", b"no", QoS::ExactlyOnce, 2));
    assert_eq!(w.recv(p3), [pubrec(pid(2))]);
    w.send(p3, &pubrel(pid(2)));
    assert_eq!(w.recv(p3), [pubcomp(pid(2))]);
    w.recv_none(sub);
}

#[test]
fn subscriptions_are_decided_per_filter() {
    let mut w = world(
        Rules::default()
            .user("u", "p")
            .allow("u", Access::Subscribe, "ok/#")
            .allow("u", Access::Receive, "#"),
    );
    for (version, refusal) in [(V5, 0x87), (V3_1_1, 0x80)] {
        let id = format!("c{version:?}");
        let (c, _) = w.connect(login(version, &id, "u", "p"));
        let mut sub = match subscribe(1, "ok/#", QoS::AtLeastOnce) {
            Packet::Subscribe(s) => s,
            _ => unreachable!(),
        };
        let mut denied = sub.subscriptions[0].clone();
        denied.filter = ByteString::from("other/#");
        sub.subscriptions.push(denied);
        w.send(c, &Packet::Subscribe(sub));
        match w.recv_one(c) {
            Packet::SubAck(a) => {
                assert_eq!(a.reasons[0], SubAckReason::GrantedQoS1);
                let code = match version {
                    V5 => a.reasons[1].code(),
                    _ => a.reasons[1].v3_return_code(),
                };
                assert_eq!(code, refusal);
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}

#[test]
fn receiving_is_decided_per_message_for_live_and_retained_messages() {
    let mut w = world(
        Rules::default()
            .user("u", "p")
            .allow("u", Access::Publish, "#")
            .allow("u", Access::Subscribe, "#")
            .allow("u", Access::Receive, "public/#"),
    );
    let (publ, _) = w.connect(login(V3_1_1, "pub", "u", "p"));
    w.send(
        publ,
        &publish_retained("public/r", b"1", QoS::AtMostOnce, 0),
    );
    w.send(
        publ,
        &publish_retained("private/r", b"2", QoS::AtMostOnce, 0),
    );
    let (sub, _) = w.connect(login(V5, "sub", "u", "p"));
    w.send(sub, &subscribe(1, "#", QoS::AtMostOnce));
    let got = w.recv(sub);
    let topics: Vec<_> = publishes(&got)
        .iter()
        .map(|p| p.topic.to_string())
        .collect();
    assert_eq!(topics, ["public/r"]);
    w.send(publ, &publish("private/live", b"3", QoS::AtMostOnce, 0));
    w.send(publ, &publish("public/live", b"4", QoS::AtMostOnce, 0));
    let topics: Vec<_> = w
        .recv(sub)
        .iter()
        .map(|p| as_publish(p).topic.to_string())
        .collect();
    assert_eq!(topics, ["public/live"]);
}

#[test]
fn a_will_the_client_may_not_publish_refuses_the_connection() {
    let mut w = world(
        Rules::default()
            .user("u", "p")
            .allow("u", Access::Publish, "status/#"),
    );
    let mut c = login(V5, "w1", "u", "p");
    c.will = Some(will("alarm", b"gone", QoS::AtMostOnce, false));
    let (conn, ack) = w.try_connect(c);
    assert_eq!(ack.reason, ConnectReason::NotAuthorized);
    assert!(w.is_closed(conn));
    let mut c = login(V5, "w2", "u", "p");
    c.will = Some(will("status/w2", b"gone", QoS::AtMostOnce, false));
    w.connect(c);
}

#[test]
fn a_new_authorizer_applies_to_connected_clients_without_dropping_them() {
    let open = Rules::default()
        .user("u", "p")
        .allow("u", Access::Publish, "#")
        .allow("u", Access::Subscribe, "#")
        .allow("u", Access::Receive, "#");
    let mut w = world(open.clone());
    let (c, _) = w.connect(login(V5, "c", "u", "p"));
    w.subscribe(c, "t", QoS::AtLeastOnce);
    w.send(c, &publish("t", b"1", QoS::AtMostOnce, 0));
    assert_eq!(publishes(&w.recv(c)).len(), 1);
    // Reload with publishing to "t" no longer allowed.
    let mut strict = open;
    strict.allow.retain(|(_, a, _)| *a != Access::Publish);
    w.broker.set_authorizer(Box::new(strict));
    w.send(c, &publish("t", b"2", QoS::AtLeastOnce, 1));
    assert!(matches!(w.recv_one(c), Packet::PubAck(a) if a.reason == PubAckReason::NotAuthorized));
    assert!(!w.is_closed(c));
}
