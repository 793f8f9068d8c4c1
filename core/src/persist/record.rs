//! Records: the state changes that must survive a crash, and their encoding on disk.
//!
//! A frame is `length: u32 | crc32c: u32 | lsn: u64 | kind: u8 | body`, big-endian, where
//! `length` counts the bytes after the checksum and the CRC32C covers them. A frame whose length
//! runs past the end of the data, or whose checksum does not match, is torn or corrupt. Strings
//! and binary fields inside a body use MQTT's two-byte length encoding (four bytes for payloads);
//! a stored message is an MQTT 5 PUBLISH packet, so every property survives exactly.

use crate::codec::{
    self, ByteString, MAX_PACKET_SIZE, Packet, PacketId, ProtocolVersion, Publish,
    PublishProperties, QoS, QosPid,
};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt;

/// Log sequence number: the position of a record in the log, from 1.
pub type Lsn = u64;

/// Bytes of a frame before its body.
pub const FRAME_HEADER: usize = 4 + 4 + 8 + 1;

/// The largest frame accepted when reading: a message of the largest packet plus its fields.
pub const MAX_FRAME: usize = MAX_PACKET_SIZE as usize + 1024;

/// A stored application message, by the id records refer to it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: u64,
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: PublishProperties,
    /// When its Message Expiry Interval runs out, in milliseconds on the driver's clock
    /// (`broker::Time`); `None` when it has no expiry or has not started (a will).
    pub expires_at: Option<u64>,
}

/// A will waiting in a persistent session: published if the client does not come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWill {
    pub message: StoredMessage,
    pub delay_secs: u32,
}

/// The options of a stored subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSubscription {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub subscription_id: Option<u32>,
}

/// One durable state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A persistent session exists with this expiry (seconds; `u32::MAX` never expires).
    SessionOpen {
        client_id: ByteString,
        expiry_secs: u32,
    },
    /// The session ended: everything of it goes.
    SessionEnd {
        client_id: ByteString,
    },
    Subscribe {
        client_id: ByteString,
        filter: ByteString,
        options: StoredSubscription,
    },
    Unsubscribe {
        client_id: ByteString,
        filter: ByteString,
    },
    /// A message that deliveries or the retained store refer to.
    Message(StoredMessage),
    /// A message queued for a session, with the QoS, RETAIN flag and subscription ids it is to
    /// be delivered with. Deliveries of a session go out in `delivery_id` order.
    Enqueue {
        client_id: ByteString,
        delivery_id: u64,
        message_id: u64,
        qos: QoS,
        retain: bool,
        subscription_ids: Vec<u32>,
    },
    /// A queued delivery was sent with this packet id; it is resent with the same id.
    Sent {
        client_id: ByteString,
        delivery_id: u64,
        packet_id: PacketId,
    },
    /// PUBREC arrived for an outbound QoS 2 message: only PUBREL remains.
    Released {
        client_id: ByteString,
        packet_id: PacketId,
    },
    /// An outbound message in flight is done (PUBACK, PUBCOMP, or abandoned).
    Acked {
        client_id: ByteString,
        packet_id: PacketId,
    },
    /// A queued delivery was dropped before it was sent (too large for the client).
    Discarded {
        client_id: ByteString,
        delivery_id: u64,
    },
    /// An inbound QoS 2 packet id was received and acknowledged with PUBREC.
    InboundQos2 {
        client_id: ByteString,
        packet_id: PacketId,
    },
    /// PUBREL released that packet id.
    InboundReleased {
        client_id: ByteString,
        packet_id: PacketId,
    },
    RetainSet {
        topic: ByteString,
        message_id: u64,
    },
    RetainClear {
        topic: ByteString,
    },
    WillSet {
        client_id: ByteString,
        will: StoredWill,
    },
    WillClear {
        client_id: ByteString,
    },
    /// Ends a batch: the records since the previous `Commit` are the changes of one step of the
    /// broker, which recovery applies whole or not at all. A crash can leave a prefix of a batch
    /// on disk; applying it would give a state no step of the broker produced (an inbound QoS 2
    /// packet id stored without the deliveries of its message, say).
    Commit,
}

/// Why stored bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The data ends inside the frame: a torn write.
    Truncated,
    /// The checksum does not match.
    Checksum,
    /// A frame longer than any record can be.
    TooLong(usize),
    /// The frame checks out but its contents do not make a record.
    Malformed(&'static str),
    /// Whole records with no `Commit` after them: a batch a crash cut short.
    Uncommitted,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Truncated => write!(f, "record cut short"),
            RecordError::Checksum => write!(f, "record checksum mismatch"),
            RecordError::TooLong(n) => write!(f, "record length {n} is impossible"),
            RecordError::Malformed(what) => write!(f, "malformed record: {what}"),
            RecordError::Uncommitted => write!(f, "records of a batch without its commit"),
        }
    }
}

impl std::error::Error for RecordError {}

mod kind {
    pub const SESSION_OPEN: u8 = 1;
    pub const SESSION_END: u8 = 2;
    pub const SUBSCRIBE: u8 = 3;
    pub const UNSUBSCRIBE: u8 = 4;
    pub const MESSAGE: u8 = 5;
    pub const ENQUEUE: u8 = 6;
    pub const SENT: u8 = 7;
    pub const RELEASED: u8 = 8;
    pub const ACKED: u8 = 9;
    pub const DISCARDED: u8 = 10;
    pub const INBOUND_QOS2: u8 = 11;
    pub const INBOUND_RELEASED: u8 = 12;
    pub const RETAIN_SET: u8 = 13;
    pub const RETAIN_CLEAR: u8 = 14;
    pub const WILL_SET: u8 = 15;
    pub const WILL_CLEAR: u8 = 16;
    pub const COMMIT: u8 = 17;
}

impl Record {
    /// Appends the record's frame to `out`.
    pub fn encode(&self, lsn: Lsn, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0); // length, patched below
        out.put_u32(0); // checksum, patched below
        out.put_u64(lsn);
        self.encode_body(out);
        let len = out.len() - start - 8;
        let crc = crc32c::crc32c(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    }

    fn encode_body(&self, out: &mut BytesMut) {
        match self {
            Record::SessionOpen {
                client_id,
                expiry_secs,
            } => {
                out.put_u8(kind::SESSION_OPEN);
                put_str(out, client_id);
                out.put_u32(*expiry_secs);
            }
            Record::SessionEnd { client_id } => {
                out.put_u8(kind::SESSION_END);
                put_str(out, client_id);
            }
            Record::Subscribe {
                client_id,
                filter,
                options,
            } => {
                out.put_u8(kind::SUBSCRIBE);
                put_str(out, client_id);
                put_str(out, filter);
                out.put_u8(options.qos as u8);
                out.put_u8(u8::from(options.no_local) | u8::from(options.retain_as_published) << 1);
                out.put_u32(options.subscription_id.unwrap_or(0));
            }
            Record::Unsubscribe { client_id, filter } => {
                out.put_u8(kind::UNSUBSCRIBE);
                put_str(out, client_id);
                put_str(out, filter);
            }
            Record::Message(m) => {
                out.put_u8(kind::MESSAGE);
                put_message(out, m);
            }
            Record::Enqueue {
                client_id,
                delivery_id,
                message_id,
                qos,
                retain,
                subscription_ids,
            } => {
                out.put_u8(kind::ENQUEUE);
                put_str(out, client_id);
                out.put_u64(*delivery_id);
                out.put_u64(*message_id);
                out.put_u8(*qos as u8);
                out.put_u8(u8::from(*retain));
                out.put_u16(subscription_ids.len() as u16);
                for id in subscription_ids {
                    out.put_u32(*id);
                }
            }
            Record::Sent {
                client_id,
                delivery_id,
                packet_id,
            } => {
                out.put_u8(kind::SENT);
                put_str(out, client_id);
                out.put_u64(*delivery_id);
                out.put_u16(packet_id.get());
            }
            Record::Released {
                client_id,
                packet_id,
            } => put_client_packet(out, kind::RELEASED, client_id, *packet_id),
            Record::Acked {
                client_id,
                packet_id,
            } => put_client_packet(out, kind::ACKED, client_id, *packet_id),
            Record::Discarded {
                client_id,
                delivery_id,
            } => {
                out.put_u8(kind::DISCARDED);
                put_str(out, client_id);
                out.put_u64(*delivery_id);
            }
            Record::InboundQos2 {
                client_id,
                packet_id,
            } => put_client_packet(out, kind::INBOUND_QOS2, client_id, *packet_id),
            Record::InboundReleased {
                client_id,
                packet_id,
            } => put_client_packet(out, kind::INBOUND_RELEASED, client_id, *packet_id),
            Record::RetainSet { topic, message_id } => {
                out.put_u8(kind::RETAIN_SET);
                put_str(out, topic);
                out.put_u64(*message_id);
            }
            Record::RetainClear { topic } => {
                out.put_u8(kind::RETAIN_CLEAR);
                put_str(out, topic);
            }
            Record::WillSet { client_id, will } => {
                out.put_u8(kind::WILL_SET);
                put_str(out, client_id);
                out.put_u32(will.delay_secs);
                put_message(out, &will.message);
            }
            Record::WillClear { client_id } => {
                out.put_u8(kind::WILL_CLEAR);
                put_str(out, client_id);
            }
            Record::Commit => out.put_u8(kind::COMMIT),
        }
    }

    /// Reads the frame at the start of `data`: the record, its LSN, and the bytes it took.
    pub fn decode(data: &Bytes) -> Result<(Lsn, Record, usize), RecordError> {
        if data.len() < 8 {
            return Err(RecordError::Truncated);
        }
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let crc = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        if len > MAX_FRAME {
            return Err(RecordError::TooLong(len));
        }
        if len < FRAME_HEADER - 8 {
            return Err(RecordError::Malformed("frame shorter than its header"));
        }
        if data.len() < 8 + len {
            return Err(RecordError::Truncated);
        }
        if crc32c::crc32c(&data[8..8 + len]) != crc {
            return Err(RecordError::Checksum);
        }
        let mut r = data.slice(8..8 + len);
        let lsn = r.get_u64();
        let record = Record::decode_body(&mut r)?;
        if r.has_remaining() {
            return Err(RecordError::Malformed("bytes after the record"));
        }
        Ok((lsn, record, 8 + len))
    }

    fn decode_body(r: &mut Bytes) -> Result<Record, RecordError> {
        let kind = get_u8(r)?;
        Ok(match kind {
            kind::SESSION_OPEN => Record::SessionOpen {
                client_id: get_str(r)?,
                expiry_secs: get_u32(r)?,
            },
            kind::SESSION_END => Record::SessionEnd {
                client_id: get_str(r)?,
            },
            kind::SUBSCRIBE => {
                let client_id = get_str(r)?;
                let filter = get_str(r)?;
                let qos = get_qos(r)?;
                let flags = get_u8(r)?;
                let sid = get_u32(r)?;
                Record::Subscribe {
                    client_id,
                    filter,
                    options: StoredSubscription {
                        qos,
                        no_local: flags & 1 != 0,
                        retain_as_published: flags & 2 != 0,
                        subscription_id: (sid != 0).then_some(sid),
                    },
                }
            }
            kind::UNSUBSCRIBE => Record::Unsubscribe {
                client_id: get_str(r)?,
                filter: get_str(r)?,
            },
            kind::MESSAGE => Record::Message(get_message(r)?),
            kind::ENQUEUE => {
                let client_id = get_str(r)?;
                let delivery_id = get_u64(r)?;
                let message_id = get_u64(r)?;
                let qos = get_qos(r)?;
                let retain = get_u8(r)? != 0;
                let n = get_u16(r)?;
                let mut subscription_ids = Vec::new();
                for _ in 0..n {
                    subscription_ids.push(get_u32(r)?);
                }
                Record::Enqueue {
                    client_id,
                    delivery_id,
                    message_id,
                    qos,
                    retain,
                    subscription_ids,
                }
            }
            kind::SENT => Record::Sent {
                client_id: get_str(r)?,
                delivery_id: get_u64(r)?,
                packet_id: get_packet_id(r)?,
            },
            kind::RELEASED => Record::Released {
                client_id: get_str(r)?,
                packet_id: get_packet_id(r)?,
            },
            kind::ACKED => Record::Acked {
                client_id: get_str(r)?,
                packet_id: get_packet_id(r)?,
            },
            kind::DISCARDED => Record::Discarded {
                client_id: get_str(r)?,
                delivery_id: get_u64(r)?,
            },
            kind::INBOUND_QOS2 => Record::InboundQos2 {
                client_id: get_str(r)?,
                packet_id: get_packet_id(r)?,
            },
            kind::INBOUND_RELEASED => Record::InboundReleased {
                client_id: get_str(r)?,
                packet_id: get_packet_id(r)?,
            },
            kind::RETAIN_SET => Record::RetainSet {
                topic: get_str(r)?,
                message_id: get_u64(r)?,
            },
            kind::RETAIN_CLEAR => Record::RetainClear { topic: get_str(r)? },
            kind::WILL_SET => {
                let client_id = get_str(r)?;
                let delay_secs = get_u32(r)?;
                Record::WillSet {
                    client_id,
                    will: StoredWill {
                        message: get_message(r)?,
                        delay_secs,
                    },
                }
            }
            kind::WILL_CLEAR => Record::WillClear {
                client_id: get_str(r)?,
            },
            kind::COMMIT => Record::Commit,
            _ => return Err(RecordError::Malformed("unknown record kind")),
        })
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    // Client ids, topics and filters come from MQTT strings, at most 65,535 bytes.
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

fn put_client_packet(out: &mut BytesMut, kind: u8, client_id: &str, packet_id: PacketId) {
    out.put_u8(kind);
    put_str(out, client_id);
    out.put_u16(packet_id.get());
}

/// A message as its id and an MQTT 5 PUBLISH packet carrying everything else.
fn put_message(out: &mut BytesMut, m: &StoredMessage) {
    out.put_u64(m.id);
    let publish = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::new(m.qos, PacketId::MIN),
        retain: m.retain,
        topic: m.topic.clone(),
        properties: m.properties.clone(),
        payload: m.payload.clone(),
    });
    let len_at = out.len();
    out.put_u32(0);
    // A message came in as a packet no larger than MAX_PACKET_SIZE, so it encodes again.
    if publish.encode(ProtocolVersion::V5, out).is_err() {
        out.truncate(len_at + 4);
    }
    let len = (out.len() - len_at - 4) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    match m.expires_at {
        None => out.put_u8(0),
        Some(at) => {
            out.put_u8(1);
            out.put_u64(at);
        }
    }
}

fn get_message(r: &mut Bytes) -> Result<StoredMessage, RecordError> {
    let id = get_u64(r)?;
    let len = get_u32(r)? as usize;
    if r.remaining() < len {
        return Err(RecordError::Malformed("message shorter than its length"));
    }
    let packet = r.split_to(len);
    let expires_at = match get_u8(r)? {
        0 => None,
        1 => Some(get_u64(r)?),
        _ => return Err(RecordError::Malformed("bad message expiry flag")),
    };
    match codec::decode(&packet, ProtocolVersion::V5, u32::MAX) {
        Ok(Some((Packet::Publish(p), used))) if used == len => Ok(StoredMessage {
            id,
            topic: p.topic,
            payload: p.payload,
            qos: p.qos_pid.qos(),
            retain: p.retain,
            properties: p.properties,
            expires_at,
        }),
        _ => Err(RecordError::Malformed("stored message is not a PUBLISH")),
    }
}

fn get_u8(r: &mut Bytes) -> Result<u8, RecordError> {
    r.try_get_u8()
        .map_err(|_| RecordError::Malformed("record cut short"))
}

fn get_u16(r: &mut Bytes) -> Result<u16, RecordError> {
    r.try_get_u16()
        .map_err(|_| RecordError::Malformed("record cut short"))
}

fn get_u32(r: &mut Bytes) -> Result<u32, RecordError> {
    r.try_get_u32()
        .map_err(|_| RecordError::Malformed("record cut short"))
}

fn get_u64(r: &mut Bytes) -> Result<u64, RecordError> {
    r.try_get_u64()
        .map_err(|_| RecordError::Malformed("record cut short"))
}

fn get_qos(r: &mut Bytes) -> Result<QoS, RecordError> {
    QoS::from_bits(get_u8(r)?).ok_or(RecordError::Malformed("QoS"))
}

fn get_packet_id(r: &mut Bytes) -> Result<PacketId, RecordError> {
    PacketId::new(get_u16(r)?).ok_or(RecordError::Malformed("packet id 0"))
}

fn get_str(r: &mut Bytes) -> Result<ByteString, RecordError> {
    let len = usize::from(get_u16(r)?);
    if r.remaining() < len {
        return Err(RecordError::Malformed("string longer than the record"));
    }
    ByteString::try_from(r.split_to(len)).map_err(|_| RecordError::Malformed("string not UTF-8"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::PayloadFormat;
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;
    use proptest::sample::select;

    /// Any string a record may hold: client ids and filters are not checked by the log.
    fn text() -> impl Strategy<Value = ByteString> {
        "[a-zA-Z0-9/+#é€ \u{0}-]{0,12}".prop_map(ByteString::from)
    }

    /// An MQTT string: no U+0000 [MQTT-1.5.4-2].
    fn mqtt_text() -> impl Strategy<Value = ByteString> {
        "[a-zA-Z0-9/+#é€ -]{0,12}".prop_map(ByteString::from)
    }

    fn topic() -> impl Strategy<Value = ByteString> {
        "[a-z0-9é]{1,4}(/[a-z0-9]{0,4}){0,3}".prop_map(ByteString::from)
    }

    fn packet_id() -> impl Strategy<Value = PacketId> {
        (1..=u16::MAX).prop_map(|n| PacketId::new(n).expect("not 0"))
    }

    fn qos() -> impl Strategy<Value = QoS> {
        select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
    }

    fn binary(max: usize) -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
    }

    /// Every property a stored message can carry (a stored message never has a Topic Alias).
    fn properties() -> impl Strategy<Value = PublishProperties> {
        (
            option::of(select(vec![
                PayloadFormat::Unspecified,
                PayloadFormat::Utf8,
            ])),
            option::of(any::<u32>()),
            option::of(topic()),
            option::of(binary(16)),
            vec((mqtt_text(), mqtt_text()), 0..=3),
            vec(1..=268_435_455u32, 0..=3),
            option::of(mqtt_text()),
        )
            .prop_map(
                |(
                    payload_format_indicator,
                    message_expiry_interval,
                    response_topic,
                    correlation_data,
                    user_properties,
                    subscription_identifiers,
                    content_type,
                )| PublishProperties {
                    payload_format_indicator,
                    message_expiry_interval,
                    topic_alias: None,
                    response_topic,
                    correlation_data,
                    user_properties,
                    subscription_identifiers,
                    content_type,
                },
            )
    }

    pub(crate) fn message() -> impl Strategy<Value = StoredMessage> {
        (
            any::<u64>(),
            topic(),
            binary(64),
            qos(),
            any::<bool>(),
            prop_oneof![1 => Just(PublishProperties::default()), 3 => properties()],
            proptest::option::of(any::<u64>()),
        )
            .prop_map(
                |(id, topic, payload, qos, retain, properties, expires_at)| StoredMessage {
                    expires_at,
                    id,
                    topic,
                    payload,
                    qos,
                    retain,
                    properties,
                },
            )
    }

    fn subscription() -> impl Strategy<Value = StoredSubscription> {
        (
            qos(),
            any::<bool>(),
            any::<bool>(),
            option::of(1..=268_435_455u32),
        )
            .prop_map(|(qos, no_local, retain_as_published, subscription_id)| {
                StoredSubscription {
                    qos,
                    no_local,
                    retain_as_published,
                    subscription_id,
                }
            })
    }

    /// Any record.
    pub(crate) fn record() -> impl Strategy<Value = Record> {
        let id = text;
        prop_oneof![
            (id(), any::<u32>()).prop_map(|(client_id, expiry_secs)| Record::SessionOpen {
                client_id,
                expiry_secs
            }),
            id().prop_map(|client_id| Record::SessionEnd { client_id }),
            (id(), text(), subscription()).prop_map(|(client_id, filter, options)| {
                Record::Subscribe {
                    client_id,
                    filter,
                    options,
                }
            }),
            (id(), text())
                .prop_map(|(client_id, filter)| Record::Unsubscribe { client_id, filter }),
            message().prop_map(Record::Message),
            (
                id(),
                any::<u64>(),
                any::<u64>(),
                qos(),
                any::<bool>(),
                vec(any::<u32>(), 0..=4)
            )
                .prop_map(
                    |(client_id, delivery_id, message_id, qos, retain, subscription_ids)| {
                        Record::Enqueue {
                            client_id,
                            delivery_id,
                            message_id,
                            qos,
                            retain,
                            subscription_ids,
                        }
                    }
                ),
            (id(), any::<u64>(), packet_id()).prop_map(|(client_id, delivery_id, packet_id)| {
                Record::Sent {
                    client_id,
                    delivery_id,
                    packet_id,
                }
            }),
            (id(), packet_id()).prop_map(|(client_id, packet_id)| Record::Released {
                client_id,
                packet_id
            }),
            (id(), packet_id()).prop_map(|(client_id, packet_id)| Record::Acked {
                client_id,
                packet_id
            }),
            (id(), any::<u64>()).prop_map(|(client_id, delivery_id)| Record::Discarded {
                client_id,
                delivery_id
            }),
            (id(), packet_id()).prop_map(|(client_id, packet_id)| Record::InboundQos2 {
                client_id,
                packet_id
            }),
            (id(), packet_id()).prop_map(|(client_id, packet_id)| Record::InboundReleased {
                client_id,
                packet_id
            }),
            (text(), any::<u64>())
                .prop_map(|(topic, message_id)| Record::RetainSet { topic, message_id }),
            text().prop_map(|topic| Record::RetainClear { topic }),
            (id(), message(), any::<u32>()).prop_map(|(client_id, message, delay_secs)| {
                Record::WillSet {
                    client_id,
                    will: StoredWill {
                        message,
                        delay_secs,
                    },
                }
            }),
            id().prop_map(|client_id| Record::WillClear { client_id }),
            Just(Record::Commit),
        ]
    }

    /// The position of a record's variant, so that a new variant cannot be left out of
    /// [`record`] and [`one_of_each`] unnoticed.
    fn variant(r: &Record) -> usize {
        match r {
            Record::SessionOpen { .. } => 0,
            Record::SessionEnd { .. } => 1,
            Record::Subscribe { .. } => 2,
            Record::Unsubscribe { .. } => 3,
            Record::Message(_) => 4,
            Record::Enqueue { .. } => 5,
            Record::Sent { .. } => 6,
            Record::Released { .. } => 7,
            Record::Acked { .. } => 8,
            Record::Discarded { .. } => 9,
            Record::InboundQos2 { .. } => 10,
            Record::InboundReleased { .. } => 11,
            Record::RetainSet { .. } => 12,
            Record::RetainClear { .. } => 13,
            Record::WillSet { .. } => 14,
            Record::WillClear { .. } => 15,
            Record::Commit => 16,
        }
    }
    const VARIANTS: usize = 17;

    fn one_of_each() -> Vec<Record> {
        let c = ByteString::from("client");
        let p = PacketId::new(7).expect("not 0");
        let m = StoredMessage {
            expires_at: Some(123_456),
            id: 3,
            topic: ByteString::from("a/b"),
            payload: Bytes::from_static(b"payload"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: PublishProperties {
                message_expiry_interval: Some(60),
                user_properties: vec![(ByteString::from("k"), ByteString::from("v"))],
                content_type: Some(ByteString::from("text/plain")),
                ..PublishProperties::default()
            },
        };
        vec![
            Record::SessionOpen {
                client_id: c.clone(),
                expiry_secs: u32::MAX,
            },
            Record::SessionEnd {
                client_id: c.clone(),
            },
            Record::Subscribe {
                client_id: c.clone(),
                filter: ByteString::from("a/+"),
                options: StoredSubscription {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    subscription_id: Some(268_435_455),
                },
            },
            Record::Unsubscribe {
                client_id: c.clone(),
                filter: ByteString::from("#"),
            },
            Record::Message(m.clone()),
            Record::Enqueue {
                client_id: c.clone(),
                delivery_id: u64::MAX,
                message_id: 3,
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: vec![1, 2],
            },
            Record::Sent {
                client_id: c.clone(),
                delivery_id: 1,
                packet_id: p,
            },
            Record::Released {
                client_id: c.clone(),
                packet_id: p,
            },
            Record::Acked {
                client_id: c.clone(),
                packet_id: p,
            },
            Record::Discarded {
                client_id: c.clone(),
                delivery_id: 2,
            },
            Record::InboundQos2 {
                client_id: c.clone(),
                packet_id: PacketId::MAX,
            },
            Record::InboundReleased {
                client_id: c.clone(),
                packet_id: PacketId::MIN,
            },
            Record::RetainSet {
                topic: ByteString::from("a/b"),
                message_id: 3,
            },
            Record::RetainClear {
                topic: ByteString::from("a/b"),
            },
            Record::WillSet {
                client_id: c.clone(),
                will: StoredWill {
                    message: m,
                    delay_secs: 5,
                },
            },
            Record::WillClear { client_id: c },
            Record::Commit,
        ]
    }

    fn encoded(lsn: Lsn, record: &Record) -> Bytes {
        let mut buf = BytesMut::new();
        record.encode(lsn, &mut buf);
        buf.freeze()
    }

    #[test]
    fn one_record_of_every_kind_round_trips() {
        let all = one_of_each();
        let kinds: std::collections::BTreeSet<usize> = all.iter().map(variant).collect();
        assert_eq!(kinds.len(), VARIANTS, "one of each kind");
        for (i, record) in all.iter().enumerate() {
            let lsn = 1000 + i as Lsn;
            let data = encoded(lsn, record);
            assert_eq!(
                Record::decode(&data),
                Ok((lsn, record.clone(), data.len())),
                "{record:?}"
            );
        }
    }

    #[test]
    fn damaged_frames_are_refused() {
        let record = Record::Acked {
            client_id: ByteString::from("c"),
            packet_id: PacketId::new(1).expect("not 0"),
        };
        let data = encoded(9, &record);
        for cut in 0..data.len() {
            assert_eq!(
                Record::decode(&data.slice(..cut)),
                Err(RecordError::Truncated),
                "cut at {cut}"
            );
        }
        // The checksum covers everything after it.
        for byte in 4..data.len() {
            let mut bad = BytesMut::from(&data[..]);
            bad[byte] ^= 0x10;
            assert_eq!(
                Record::decode(&bad.freeze()),
                Err(RecordError::Checksum),
                "byte {byte}"
            );
        }
        let with_len = |len: u32| {
            let mut bad = BytesMut::from(&data[..]);
            bad[..4].copy_from_slice(&len.to_be_bytes());
            bad.freeze()
        };
        assert_eq!(
            Record::decode(&with_len(MAX_FRAME as u32 + 1)),
            Err(RecordError::TooLong(MAX_FRAME + 1))
        );
        assert!(matches!(
            Record::decode(&with_len(8)),
            Err(RecordError::Malformed(_))
        ));
        // Frames whose checksum is right but whose body is not a record.
        let frame = |body: &[u8]| {
            let mut out = BytesMut::new();
            out.put_u32((8 + body.len()) as u32);
            let mut covered = BytesMut::new();
            covered.put_u64(1);
            covered.put_slice(body);
            out.put_u32(crc32c::crc32c(&covered));
            out.put_slice(&covered);
            out.freeze()
        };
        for body in [
            &[0u8][..],                        // no such kind
            &[99],                             // no such kind
            &[kind::COMMIT, 0],                // bytes after the record
            &[kind::SESSION_END, 0, 5, b'a'],  // string longer than the record
            &[kind::SESSION_END, 0, 1, 0xFF],  // not UTF-8
            &[kind::ACKED, 0, 1, b'a', 0, 0],  // packet id 0
            &[kind::SESSION_OPEN, 0, 1, b'a'], // cut short
        ] {
            assert!(
                matches!(Record::decode(&frame(body)), Err(RecordError::Malformed(_))),
                "{body:?}"
            );
        }
        let mut enqueue_qos3 = vec![kind::ENQUEUE, 0, 1, b'a'];
        enqueue_qos3.extend_from_slice(&[0; 16]);
        enqueue_qos3.extend_from_slice(&[3, 0, 0, 0]);
        assert!(matches!(
            Record::decode(&frame(&enqueue_qos3)),
            Err(RecordError::Malformed(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 128,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn every_record_round_trips(lsn in any::<u64>(), record in record()) {
            let data = encoded(lsn, &record);
            prop_assert_eq!(Record::decode(&data), Ok((lsn, record.clone(), data.len())));
            // A frame says where it ends: what follows is not read.
            let mut longer = BytesMut::from(&data[..]);
            longer.put_slice(&[0xAA; 9]);
            prop_assert_eq!(Record::decode(&longer.freeze()), Ok((lsn, record, data.len())));
        }

        #[test]
        fn records_decode_one_after_another(records in vec(record(), 0..8)) {
            let mut log = BytesMut::new();
            for (i, r) in records.iter().enumerate() {
                r.encode(i as Lsn + 1, &mut log);
            }
            let mut rest = log.freeze();
            let mut decoded = Vec::new();
            while !rest.is_empty() {
                let (lsn, r, used) = Record::decode(&rest).expect("intact");
                decoded.push((lsn, r));
                rest = rest.slice(used..);
            }
            let expected: Vec<(Lsn, Record)> =
                records.into_iter().enumerate().map(|(i, r)| (i as Lsn + 1, r)).collect();
            prop_assert_eq!(decoded, expected);
        }
    }
}
