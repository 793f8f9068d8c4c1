//! The bytes the load generator sends and reads. CONNECT and SUBSCRIBE go through midge-core's
//! codec; the packets of the hot path (PUBLISH and its acknowledgements) are written and read by
//! hand, so that the generator spends as little CPU per message as possible: it shares the
//! machine with the broker it measures.

use bytes::BytesMut;
use midge_core::codec::{
    ByteString, Connect, ConnectProperties, Packet, PacketId, ProtocolVersion, QoS, Subscribe,
    SubscribeProperties, Subscription, SubscriptionOptions,
};

/// Packet types (the high nibble of the first byte).
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBACK: u8 = 9;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;

/// The measured part of every payload: publisher index, sequence number, send time.
pub const STAMP_LEN: usize = 4 + 8 + 8;

pub fn connect(version: ProtocolVersion, client_id: &str, keep_alive: u16, out: &mut BytesMut) {
    let mut properties = ConnectProperties::default();
    if version.is_v5() {
        // As many unacknowledged messages toward us as the broker will send: the generator
        // acknowledges at once, so the broker's own limit is what is measured.
        properties.receive_maximum = std::num::NonZeroU16::new(u16::MAX);
    }
    let connect = Connect {
        protocol_version: version,
        bridge: false,
        clean_start: true,
        keep_alive,
        properties,
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
    };
    Packet::from(connect)
        .encode(version, out)
        .expect("CONNECT encodes");
}

pub fn subscribe(version: ProtocolVersion, filter: &str, qos: QoS, out: &mut BytesMut) {
    subscribe_many(version, 1, &[filter.to_owned()], qos, out);
}

/// One SUBSCRIBE with every filter of `filters`.
pub fn subscribe_many(
    version: ProtocolVersion,
    packet_id: u16,
    filters: &[String],
    qos: QoS,
    out: &mut BytesMut,
) {
    let subscribe = Subscribe {
        packet_id: PacketId::new(packet_id).expect("non-zero packet id"),
        properties: SubscribeProperties::default(),
        subscriptions: filters
            .iter()
            .map(|f| Subscription {
                filter: ByteString::from(f.as_str()),
                options: SubscriptionOptions::new(qos),
            })
            .collect(),
    };
    Packet::Subscribe(subscribe)
        .encode(version, out)
        .expect("SUBSCRIBE encodes");
}

/// Appends a variable byte integer.
fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends a PUBLISH of `payload_len` bytes whose first bytes are the stamp.
#[allow(clippy::too_many_arguments)]
pub fn publish(
    out: &mut Vec<u8>,
    v5: bool,
    topic: &[u8],
    qos: QoS,
    packet_id: u16,
    publisher: u32,
    seq: u64,
    sent_nanos: u64,
    payload_len: usize,
) {
    let pid_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + topic.len() + pid_len + usize::from(v5) + payload_len;
    out.push((PUBLISH << 4) | ((qos as u8) << 1));
    put_varint(out, remaining);
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic);
    if pid_len > 0 {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    if v5 {
        out.push(0); // no properties
    }
    out.extend_from_slice(&publisher.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&sent_nanos.to_be_bytes());
    out.resize(out.len() + payload_len - STAMP_LEN, b'x');
}

/// Appends PUBACK, PUBREC, PUBREL or PUBCOMP (success, no properties: the short form every
/// version accepts).
pub fn ack(out: &mut Vec<u8>, kind: u8, packet_id: u16) {
    let flags = if kind == PUBREL { 0b0010 } else { 0 };
    out.push((kind << 4) | flags);
    out.push(2);
    out.extend_from_slice(&packet_id.to_be_bytes());
}

/// One packet read from the broker.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    ConnAck {
        code: u8,
    },
    SubAck {
        code: u8,
    },
    Publish(Delivery),
    /// PUBACK, PUBREC, PUBREL or PUBCOMP, with its reason code (0 when left out).
    Ack {
        kind: u8,
        packet_id: u16,
        reason: u8,
    },
    PingResp,
    Disconnect {
        reason: u8,
    },
}

/// What the generator needs of a delivered PUBLISH.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery {
    pub qos: u8,
    pub packet_id: u16,
    pub publisher: u32,
    pub seq: u64,
    pub sent_nanos: u64,
}

/// Reads the first packet of `buf`: `Ok(None)` until it is complete, else the packet and its
/// length. Anything the generator cannot make sense of is an error that ends the run.
pub fn read(buf: &[u8], v5: bool) -> Result<Option<(Incoming, usize)>, String> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    let mut i = 1;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * (i - 1));
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return Err("malformed remaining length".into());
        }
    }
    let total = i + remaining;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[i..total];
    let kind = first >> 4;
    let short = || format!("packet type {kind} too short ({} bytes)", body.len());
    let packet = match kind {
        CONNACK => Incoming::ConnAck {
            code: *body.get(1).ok_or_else(short)?,
        },
        SUBACK => {
            let codes = suback_codes(body, v5).ok_or_else(short)?;
            Incoming::SubAck {
                code: *codes.iter().max().ok_or_else(short)?,
            }
        }
        PUBLISH => Incoming::Publish(read_publish(first, body, v5).ok_or_else(short)?),
        PUBACK | PUBREC | PUBREL | PUBCOMP => {
            let id = body.get(..2).ok_or_else(short)?;
            Incoming::Ack {
                kind,
                packet_id: u16::from_be_bytes([id[0], id[1]]),
                reason: body.get(2).copied().unwrap_or(0),
            }
        }
        PINGRESP => Incoming::PingResp,
        DISCONNECT => Incoming::Disconnect {
            reason: body.first().copied().unwrap_or(0),
        },
        other => return Err(format!("unexpected packet type {other}")),
    };
    Ok(Some((packet, total)))
}

/// The return codes of a SUBACK body: after the packet id and, in 5.0, the properties.
fn suback_codes(body: &[u8], v5: bool) -> Option<&[u8]> {
    let mut at = 2;
    if v5 {
        let (len, used) = read_varint(body.get(at..)?)?;
        at += used + len;
    }
    body.get(at..).filter(|c| !c.is_empty())
}

/// A variable byte integer at the start of `b`: its value and length.
fn read_varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in b.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn read_publish(first: u8, body: &[u8], v5: bool) -> Option<Delivery> {
    let qos = (first >> 1) & 0b11;
    let topic_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let mut at = 2 + topic_len;
    let mut packet_id = 0;
    if qos > 0 {
        packet_id = u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]);
        at += 2;
    }
    if v5 {
        // Skip the properties (a broker may add some, such as a topic alias).
        let (len, used) = read_varint(body.get(at..)?)?;
        at += used + len;
    }
    let stamp = body.get(at..at + STAMP_LEN)?;
    Some(Delivery {
        qos,
        packet_id,
        publisher: u32::from_be_bytes(stamp[0..4].try_into().ok()?),
        seq: u64::from_be_bytes(stamp[4..12].try_into().ok()?),
        sent_nanos: u64::from_be_bytes(stamp[12..20].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use midge_core::codec::{QosPid, decode};

    /// The hand-written PUBLISH is what midge-core's codec decodes, in both versions, and the
    /// hand-written reader reads it back.
    #[test]
    fn publish_round_trips_through_the_codec() {
        for (version, v5) in [
            (ProtocolVersion::V3_1_1, false),
            (ProtocolVersion::V5, true),
        ] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for payload_len in [STAMP_LEN, 64, 200] {
                    let mut out = Vec::new();
                    publish(&mut out, v5, b"bench/t", qos, 7, 3, 99, 12345, payload_len);
                    let bytes = Bytes::from(out.clone());
                    let (packet, used) = decode(&bytes, version, u32::MAX).unwrap().unwrap();
                    assert_eq!(used, out.len());
                    let Packet::Publish(p) = packet else {
                        panic!("not a PUBLISH")
                    };
                    assert_eq!(&p.topic[..], "bench/t");
                    assert_eq!(p.payload.len(), payload_len);
                    let expected = match qos {
                        QoS::AtMostOnce => QosPid::AtMostOnce,
                        q => QosPid::new(q, PacketId::new(7).unwrap()),
                    };
                    assert_eq!(p.qos_pid, expected);
                    let (incoming, used) = read(&out, v5).unwrap().unwrap();
                    assert_eq!(used, out.len());
                    assert_eq!(
                        incoming,
                        Incoming::Publish(Delivery {
                            qos: qos as u8,
                            packet_id: if qos == QoS::AtMostOnce { 0 } else { 7 },
                            publisher: 3,
                            seq: 99,
                            sent_nanos: 12345,
                        })
                    );
                    assert_eq!(read(&out[..out.len() - 1], v5).unwrap(), None);
                }
            }
        }
    }

    #[test]
    fn acks_decode_with_the_codec() {
        for kind in [PUBACK, PUBREC, PUBREL, PUBCOMP] {
            let mut out = Vec::new();
            ack(&mut out, kind, 513);
            let bytes = Bytes::from(out.clone());
            for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
                let (packet, _) = decode(&bytes, version, u32::MAX).unwrap().unwrap();
                assert_eq!(packet.packet_type() as u8, kind);
            }
            assert_eq!(
                read(&out, false).unwrap(),
                Some((
                    Incoming::Ack {
                        kind,
                        packet_id: 513,
                        reason: 0
                    },
                    4
                ))
            );
        }
    }

    #[test]
    fn long_remaining_length() {
        let mut out = Vec::new();
        publish(&mut out, true, b"t", QoS::AtLeastOnce, 1, 0, 0, 0, 100_000);
        assert_eq!(read(&out, true).unwrap().unwrap().1, out.len());
        assert!(read(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x7f], false).is_err());
    }
}
