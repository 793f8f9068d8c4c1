//! Writes the seed corpus of the `decode_packet` target: one small valid example of every
//! packet type in every protocol version that has it, each file a version byte (0: MQTT 3.1,
//! 1: 3.1.1, 2: 5.0) followed by the packet. MQTT 5 examples carry properties.
//! `cargo run --no-default-features --example write_seeds` (from fuzz/).

use bytes::{Bytes, BytesMut};
use midge_core::codec::{
    AckProperties, Auth, AuthProperties, AuthReason, ByteString, ConnAck, ConnAckProperties,
    Connect, ConnectProperties, ConnectReason, Disconnect, DisconnectReason, LastWill, Packet,
    PacketId, PayloadFormat, ProtocolVersion, PubAck, PubAckReason, PubComp, PubRec, PubRel,
    Publish, PublishProperties, QoS, QosPid, RetainHandling, SubAck, SubAckReason, Subscribe,
    SubscribeProperties, Subscription, SubscriptionOptions, UnsubAck, UnsubAckReason, Unsubscribe,
    UnsubscribeProperties, WillProperties,
};
use std::num::{NonZeroU16, NonZeroU32};
use std::path::Path;

fn pid(n: u16) -> PacketId {
    NonZeroU16::new(n).expect("non-zero")
}

fn s(text: &'static str) -> ByteString {
    ByteString::from_static(text)
}

fn user() -> Vec<(ByteString, ByteString)> {
    vec![(s("k"), s("v"))]
}

fn packets(v5: bool) -> Vec<(&'static str, Packet)> {
    let ack = || AckProperties {
        reason_string: v5.then(|| s("why")),
        user_properties: if v5 { user() } else { Vec::new() },
    };
    let publish = |qos_pid, retain| {
        Packet::Publish(Publish {
            dup: false,
            qos_pid,
            retain,
            topic: s("a/b"),
            properties: if v5 {
                PublishProperties {
                    payload_format_indicator: Some(PayloadFormat::Utf8),
                    message_expiry_interval: Some(60),
                    topic_alias: NonZeroU16::new(1),
                    response_topic: Some(s("r/a")),
                    correlation_data: Some(Bytes::from_static(b"c")),
                    user_properties: user(),
                    subscription_identifiers: vec![1, 268_435_455],
                    content_type: Some(s("text/plain")),
                }
            } else {
                PublishProperties::default()
            },
            payload: Bytes::from_static(b"hello"),
        })
    };
    let mut list = vec![
        ("connack", {
            Packet::from(ConnAck {
                session_present: true,
                reason: ConnectReason::Success,
                properties: if v5 {
                    ConnAckProperties {
                        receive_maximum: NonZeroU16::new(10),
                        maximum_qos: Some(QoS::AtLeastOnce),
                        maximum_packet_size: NonZeroU32::new(1024),
                        assigned_client_identifier: Some(s("auto-1")),
                        topic_alias_maximum: Some(5),
                        server_keep_alive: Some(30),
                        ..ConnAckProperties::default()
                    }
                } else {
                    ConnAckProperties::default()
                },
            })
        }),
        ("publish_qos0", publish(QosPid::AtMostOnce, false)),
        (
            "publish_qos1_retain",
            publish(QosPid::AtLeastOnce(pid(1)), true),
        ),
        ("publish_qos2", publish(QosPid::ExactlyOnce(pid(2)), false)),
        ("puback", {
            let mut a = PubAck::success(pid(1));
            if v5 {
                a.reason = PubAckReason::NoMatchingSubscribers;
            }
            a.properties = ack();
            Packet::PubAck(a)
        }),
        ("pubrec", {
            let mut a = PubRec::success(pid(2));
            a.properties = ack();
            Packet::PubRec(a)
        }),
        ("pubrel", {
            let mut a = PubRel::success(pid(2));
            a.properties = ack();
            Packet::PubRel(a)
        }),
        ("pubcomp", {
            let mut a = PubComp::success(pid(2));
            a.properties = ack();
            Packet::PubComp(a)
        }),
        ("subscribe", {
            Packet::Subscribe(Subscribe {
                packet_id: pid(3),
                properties: SubscribeProperties {
                    subscription_identifier: v5.then_some(7),
                    user_properties: if v5 { user() } else { Vec::new() },
                },
                subscriptions: vec![
                    Subscription {
                        filter: s("a/+"),
                        options: SubscriptionOptions::new(QoS::AtLeastOnce),
                    },
                    Subscription {
                        filter: s(if v5 { "$share/g/#" } else { "#" }),
                        options: SubscriptionOptions {
                            qos: QoS::ExactlyOnce,
                            no_local: false,
                            retain_as_published: v5,
                            retain_handling: if v5 {
                                RetainHandling::OnNewSubscribe
                            } else {
                                RetainHandling::OnSubscribe
                            },
                        },
                    },
                ],
            })
        }),
        ("suback", {
            Packet::SubAck(SubAck {
                packet_id: pid(3),
                properties: ack(),
                reasons: vec![
                    SubAckReason::granted(QoS::AtLeastOnce),
                    SubAckReason::UnspecifiedError,
                ],
            })
        }),
        ("unsubscribe", {
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(4),
                properties: UnsubscribeProperties {
                    user_properties: if v5 { user() } else { Vec::new() },
                },
                filters: vec![s("a/+"), s("#")],
            })
        }),
        ("unsuback", {
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(4),
                properties: ack(),
                reasons: if v5 {
                    vec![
                        UnsubAckReason::Success,
                        UnsubAckReason::NoSubscriptionExisted,
                    ]
                } else {
                    Vec::new()
                },
            })
        }),
        ("pingreq", Packet::PingReq),
        ("pingresp", Packet::PingResp),
        ("disconnect", {
            let mut d = Disconnect::new(if v5 {
                DisconnectReason::DisconnectWithWillMessage
            } else {
                DisconnectReason::NormalDisconnection
            });
            if v5 {
                d.properties.session_expiry_interval = Some(0);
                d.properties.reason_string = Some(s("bye"));
            }
            Packet::Disconnect(d)
        }),
    ];
    if v5 {
        list.push((
            "auth",
            Packet::Auth(Auth {
                reason: AuthReason::ContinueAuthentication,
                properties: AuthProperties {
                    authentication_method: Some(s("SCRAM-SHA-1")),
                    authentication_data: Some(Bytes::from_static(b"data")),
                    ..AuthProperties::default()
                },
            }),
        ));
    }
    list
}

fn connect(version: ProtocolVersion) -> Packet {
    let v5 = version == ProtocolVersion::V5;
    Packet::from(Connect {
        protocol_version: version,
        bridge: false,
        clean_start: false,
        keep_alive: 60,
        properties: if v5 {
            ConnectProperties {
                session_expiry_interval: Some(3600),
                receive_maximum: NonZeroU16::new(20),
                maximum_packet_size: NonZeroU32::new(4096),
                topic_alias_maximum: Some(10),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                user_properties: user(),
                ..ConnectProperties::default()
            }
        } else {
            ConnectProperties::default()
        },
        client_id: s("client-1"),
        will: Some(LastWill {
            topic: s("will/t"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: if v5 {
                WillProperties {
                    will_delay_interval: Some(5),
                    message_expiry_interval: Some(60),
                    content_type: Some(s("text/plain")),
                    ..WillProperties::default()
                }
            } else {
                WillProperties::default()
            },
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(b"secret")),
    })
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/decode_packet");
    std::fs::create_dir_all(&dir).expect("corpus directory");
    let versions = [
        (0u8, "v3_1", ProtocolVersion::V3_1),
        (1, "v3_1_1", ProtocolVersion::V3_1_1),
        (2, "v5", ProtocolVersion::V5),
    ];
    for (selector, name, version) in versions {
        let all = std::iter::once(("connect", connect(version)))
            .chain(packets(version == ProtocolVersion::V5));
        for (packet_name, packet) in all {
            let mut out = BytesMut::from(&[selector][..]);
            packet.encode(version, &mut out).expect("seed encodes");
            let path = dir.join(format!("{name}_{packet_name}"));
            std::fs::write(&path, &out).expect("seed written");
        }
    }
    println!("seeds written to {}", dir.display());
}
