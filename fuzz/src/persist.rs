//! Target `recover`: recovery from arbitrary log and snapshot bytes.
//!
//! Frames carry a CRC32C, which random bytes almost never match, so besides raw bytes the input
//! can describe batches of well-formed records (from small sets of client ids, message ids and
//! packet ids, so that they often fit together) and damage done to their encoding afterwards.
//! Whatever the bytes, reading them never panics and ends in one of two ways: a state every
//! record of which was consistent, from which a broker is rebuilt and serves its sessions' clients;
//! or an error that says where and what.

use crate::broker::{Peer, check_snapshot};
use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use midge_core::broker::{Action, Broker, Config, ConnId, Input, ListenerId, Open, Time};
use midge_core::codec::{
    ByteString, Connect, ConnectProperties, Packet, ProtocolVersion, PublishProperties, QoS,
};
use midge_core::persist::{
    self, Damage, Lsn, Record, State, StoredMessage, StoredSubscription, StoredWill, snapshot,
};
use std::num::NonZeroU16;

#[derive(Debug, Arbitrary)]
enum LogInput {
    /// Raw bytes as a log.
    Log(Vec<u8>),
    /// Raw bytes as a snapshot at an LSN.
    Snapshot {
        lsn: u8,
        salvage: bool,
        bytes: Vec<u8>,
    },
    /// Well-formed batches of records as a log, then damaged.
    Records {
        batches: Vec<Vec<RecordChoice>>,
        damage: Vec<Harm>,
    },
    /// A snapshot of the state of well-formed batches, then damaged.
    SnapshotOf {
        batches: Vec<Vec<RecordChoice>>,
        damage: Vec<Harm>,
        salvage: bool,
    },
}

/// Something done to encoded bytes.
#[derive(Debug, Arbitrary)]
enum Harm {
    FlipBit { at: u16, bit: u8 },
    Truncate { at: u16 },
    Insert { at: u16, byte: u8 },
    Remove { at: u16, len: u8 },
}

#[derive(Debug, Arbitrary)]
enum RecordChoice {
    SessionOpen {
        client: u8,
        expiry: u8,
    },
    SessionEnd {
        client: u8,
    },
    Subscribe {
        client: u8,
        filter: u8,
        qos: u8,
    },
    Unsubscribe {
        client: u8,
        filter: u8,
    },
    Message {
        id: u8,
        topic: u8,
        qos: u8,
        expires: Option<u8>,
    },
    Enqueue {
        client: u8,
        delivery: u8,
        message: u8,
        qos: u8,
        retain: bool,
    },
    Sent {
        client: u8,
        delivery: u8,
        packet_id: u8,
    },
    Released {
        client: u8,
        packet_id: u8,
    },
    Acked {
        client: u8,
        packet_id: u8,
    },
    Discarded {
        client: u8,
        delivery: u8,
    },
    InboundQos2 {
        client: u8,
        packet_id: u8,
    },
    InboundReleased {
        client: u8,
        packet_id: u8,
    },
    RetainSet {
        topic: u8,
        message: u8,
    },
    RetainClear {
        topic: u8,
    },
    WillSet {
        client: u8,
        topic: u8,
        delay: u8,
    },
    WillClear {
        client: u8,
    },
}

const CLIENTS: &[&str] = &["a", "b", "c"];
const TOPICS: &[&str] = &["t", "t/u", "$SYS/x"];
const FILTERS: &[&str] = &["t", "t/#", "+", "$share/g/t"];

fn pick(list: &[&'static str], i: u8) -> ByteString {
    ByteString::from_static(list[usize::from(i) % list.len()])
}

fn qos(n: u8) -> QoS {
    QoS::from_bits(n % 3).unwrap_or(QoS::AtMostOnce)
}

fn packet_id(n: u8) -> NonZeroU16 {
    NonZeroU16::new(u16::from(n % 4) + 1).unwrap_or(NonZeroU16::MIN)
}

fn message(id: u8, topic: u8, q: u8, expires: Option<u8>) -> StoredMessage {
    StoredMessage {
        id: u64::from(id % 4) + 1,
        topic: pick(TOPICS, topic),
        payload: Bytes::from_static(b"payload"),
        qos: qos(q),
        retain: false,
        properties: PublishProperties::default(),
        expires_at: expires.map(|e| u64::from(e) * 1000),
    }
}

impl RecordChoice {
    fn record(&self) -> Record {
        use RecordChoice as C;
        let delivery = |d: &u8| u64::from(d % 4) + 1;
        match self {
            C::SessionOpen { client, expiry } => Record::SessionOpen {
                client_id: pick(CLIENTS, *client),
                expiry_secs: [0, 5, u32::MAX][usize::from(expiry % 3)],
            },
            C::SessionEnd { client } => Record::SessionEnd {
                client_id: pick(CLIENTS, *client),
            },
            C::Subscribe {
                client,
                filter,
                qos: q,
            } => Record::Subscribe {
                client_id: pick(CLIENTS, *client),
                filter: pick(FILTERS, *filter),
                options: StoredSubscription {
                    qos: qos(*q),
                    no_local: q & 4 != 0,
                    retain_as_published: q & 8 != 0,
                    subscription_id: (q & 16 != 0).then_some(7),
                },
            },
            C::Unsubscribe { client, filter } => Record::Unsubscribe {
                client_id: pick(CLIENTS, *client),
                filter: pick(FILTERS, *filter),
            },
            C::Message {
                id,
                topic,
                qos: q,
                expires,
            } => Record::Message(message(*id, *topic, *q, *expires)),
            C::Enqueue {
                client,
                delivery: d,
                message,
                qos: q,
                retain,
            } => Record::Enqueue {
                client_id: pick(CLIENTS, *client),
                delivery_id: delivery(d),
                message_id: u64::from(message % 4) + 1,
                qos: qos(*q),
                retain: *retain,
                subscription_ids: Vec::new(),
            },
            C::Sent {
                client,
                delivery: d,
                packet_id: p,
            } => Record::Sent {
                client_id: pick(CLIENTS, *client),
                delivery_id: delivery(d),
                packet_id: packet_id(*p),
            },
            C::Released {
                client,
                packet_id: p,
            } => Record::Released {
                client_id: pick(CLIENTS, *client),
                packet_id: packet_id(*p),
            },
            C::Acked {
                client,
                packet_id: p,
            } => Record::Acked {
                client_id: pick(CLIENTS, *client),
                packet_id: packet_id(*p),
            },
            C::Discarded {
                client,
                delivery: d,
            } => Record::Discarded {
                client_id: pick(CLIENTS, *client),
                delivery_id: delivery(d),
            },
            C::InboundQos2 {
                client,
                packet_id: p,
            } => Record::InboundQos2 {
                client_id: pick(CLIENTS, *client),
                packet_id: packet_id(*p),
            },
            C::InboundReleased {
                client,
                packet_id: p,
            } => Record::InboundReleased {
                client_id: pick(CLIENTS, *client),
                packet_id: packet_id(*p),
            },
            C::RetainSet { topic, message } => Record::RetainSet {
                topic: pick(TOPICS, *topic),
                message_id: u64::from(message % 4) + 1,
            },
            C::RetainClear { topic } => Record::RetainClear {
                topic: pick(TOPICS, *topic),
            },
            C::WillSet {
                client,
                topic,
                delay,
            } => Record::WillSet {
                client_id: pick(CLIENTS, *client),
                will: StoredWill {
                    message: StoredMessage {
                        id: 0,
                        ..message(0, *topic, *delay, None)
                    },
                    delay_secs: u32::from(delay % 3) * 5,
                },
            },
            C::WillClear { client } => Record::WillClear {
                client_id: pick(CLIENTS, *client),
            },
        }
    }
}

/// Encodes batches of records, each ending with a `Commit`, with LSNs from 1.
fn encode_log(batches: &[Vec<RecordChoice>]) -> BytesMut {
    let mut out = BytesMut::new();
    let mut lsn: Lsn = 0;
    for batch in batches.iter().take(16) {
        let records = batch.iter().take(16).map(RecordChoice::record);
        for record in records.chain(std::iter::once(Record::Commit)) {
            lsn += 1;
            record.encode(lsn, &mut out);
        }
    }
    out
}

fn harm(bytes: &mut Vec<u8>, damage: &[Harm]) {
    for h in damage.iter().take(4) {
        let at = |at: u16, len: usize| usize::from(at) % (len + 1);
        match *h {
            Harm::FlipBit { at: a, bit } => {
                if !bytes.is_empty() {
                    let i = usize::from(a) % bytes.len();
                    bytes[i] ^= 1 << (bit % 8);
                }
            }
            Harm::Truncate { at: a } => bytes.truncate(at(a, bytes.len())),
            Harm::Insert { at: a, byte } => bytes.insert(at(a, bytes.len()), byte),
            Harm::Remove { at: a, len } => {
                let from = at(a, bytes.len());
                let to = (from + usize::from(len)).min(bytes.len());
                bytes.drain(from..to);
            }
        }
    }
}

/// What the input stands for.
pub fn describe(data: &[u8]) -> String {
    match LogInput::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(input) => format!("{input:#?}"),
        Err(e) => format!("not an input: {e}"),
    }
}

/// Reads the input as a log or a snapshot, and recovers a broker from what it holds.
pub fn recover(data: &[u8]) {
    let Ok(input) = LogInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    match input {
        LogInput::Log(bytes) => log(&bytes, false),
        LogInput::Records { batches, damage } => {
            let mut bytes = encode_log(&batches).to_vec();
            let intact = damage.is_empty();
            harm(&mut bytes, &damage);
            log(&bytes, intact);
        }
        LogInput::Snapshot {
            lsn,
            salvage,
            bytes,
        } => {
            read_snapshot(&Bytes::from(bytes), Lsn::from(lsn), salvage);
        }
        LogInput::SnapshotOf {
            batches,
            damage,
            salvage,
        } => {
            // Only a consistent log has a state to take a snapshot of.
            let Some(state) = state_of(&encode_log(&batches).freeze()) else {
                return;
            };
            let mut bytes: Vec<u8> = snapshot::snapshot_chunks(&state, 64).flatten().collect();
            let intact = damage.is_empty();
            harm(&mut bytes, &damage);
            let loaded = read_snapshot(&Bytes::from(bytes), state.last_lsn(), salvage);
            if intact {
                assert_eq!(
                    loaded,
                    Some(state),
                    "an intact snapshot reads back differently"
                );
            }
        }
    }
}

/// The state of a log whose records are all intact and consistent.
fn state_of(data: &Bytes) -> Option<State> {
    let scan = persist::scan(data);
    if scan.damage.is_some() {
        return None;
    }
    let mut state = State::default();
    for (lsn, record) in &scan.records {
        state.apply(*lsn, record).ok()?;
    }
    Some(state)
}

/// Scans a log as recovery does: whole batches up to the first damage, then their records
/// applied in order. `intact` says the bytes are an undamaged encoding of whole batches.
fn log(bytes: &[u8], intact: bool) {
    let data = Bytes::copy_from_slice(bytes);
    let scan = persist::scan(&data);
    assert!(scan.valid_len <= data.len());
    match &scan.damage {
        None => assert_eq!(
            scan.valid_len,
            data.len(),
            "an intact log is read to its end"
        ),
        Some(Damage::TornTail { offset, error }) => {
            assert_eq!(
                *offset, scan.valid_len,
                "a torn tail starts where batches end"
            );
            assert!(!error.to_string().is_empty());
        }
        Some(Damage::Corrupt { offset, error }) => {
            assert!(*offset < data.len());
            assert!(!error.to_string().is_empty());
        }
    }
    if intact {
        assert_eq!(scan.damage, None, "an undamaged log reads as damaged");
    }
    if let Some((_, last)) = scan.records.last() {
        assert_eq!(*last, Record::Commit, "a batch kept without its Commit");
    }
    let mut state = State::default();
    for (lsn, record) in &scan.records {
        if let Err(e) = state.apply(*lsn, record) {
            // The clear error a restart stops with.
            assert_eq!(e.lsn, *lsn);
            assert!(!e.reason.is_empty());
            return;
        }
    }
    check_snapshot(&state);
    serve(&state);
}

/// Reads a snapshot as a restart does; returns the state when it reads without damage.
fn read_snapshot(data: &Bytes, lsn: Lsn, salvage: bool) -> Option<State> {
    let loaded = snapshot::decode_snapshot(data, lsn, salvage);
    for d in &loaded.damage {
        assert!(!d.reason.is_empty());
        assert!(d.offset <= data.len() as u64, "damage past the end: {d:?}");
    }
    if loaded.damage.is_empty() {
        assert_eq!(
            loaded.state.last_lsn(),
            lsn,
            "a snapshot's state is at its LSN"
        );
        check_snapshot(&loaded.state);
    }
    // A salvaged state is made of consistent records too, and a broker must be able to run on
    // it.
    serve(&loaded.state);
    loaded.damage.is_empty().then_some(loaded.state)
}

/// Rebuilds a broker from `state` and has each stored session's client come back: it must be
/// served valid packets, and whatever the broker records must fit the state it started from.
fn serve(state: &State) {
    let config = Config {
        persistence: true,
        ..Config::default()
    };
    let mut broker = Broker::recover(config.clone(), state, Time::from_millis(1_000));
    let stats = broker.stats();
    assert_eq!(
        stats.sessions,
        state.sessions.len() as u64,
        "recovered sessions"
    );
    assert_eq!(
        stats.retained_messages,
        state.retained.len() as u64,
        "recovered retained messages"
    );
    let mut log = state.clone();
    let mut peers = Vec::new();
    for (i, client_id) in state.sessions.keys().take(4).enumerate() {
        let conn = ConnId(i as u64 + 1);
        let mut peer = Peer::new(config.max_packet_size);
        broker.handle(
            Time::from_millis(2_000),
            Input::Open(Open {
                conn,
                listener: ListenerId(0),
                peer: None,
                tls_identity: None,
            }),
        );
        let connect = Packet::from(Connect {
            protocol_version: ProtocolVersion::V5,
            bridge: false,
            clean_start: false,
            keep_alive: 0,
            properties: ConnectProperties {
                session_expiry_interval: Some(u32::MAX),
                ..ConnectProperties::default()
            },
            client_id: client_id.clone(),
            will: None,
            username: None,
            password: None,
        });
        let mut bytes = BytesMut::new();
        connect
            .encode(ProtocolVersion::V5, &mut bytes)
            .expect("CONNECT encodes");
        peer.client_sent(&bytes);
        broker.handle(
            Time::from_millis(2_000),
            Input::Received {
                conn,
                bytes: &bytes,
            },
        );
        peers.push((conn, peer));
    }
    // Past every will delay and session expiry the records can hold.
    broker.handle(Time::from_millis(1_000_000_000), Input::Tick);
    while let Some(action) = broker.poll_action() {
        match action {
            Action::Send { conn, bytes } => {
                let (_, peer) = peers
                    .iter_mut()
                    .find(|(c, _)| *c == conn)
                    .expect("sent to a connection that was opened");
                peer.broker_sent(&bytes);
            }
            Action::Persist { bytes, .. } => {
                let scan = persist::scan(&bytes);
                assert_eq!(scan.damage, None, "a Persist batch does not scan cleanly");
                for (lsn, record) in &scan.records {
                    log.apply(*lsn, record).unwrap_or_else(|e| {
                        panic!("a recovered broker wrote a record its state refuses: {e}")
                    });
                }
            }
            Action::Close { .. } | Action::PauseRead { .. } | Action::ResumeRead { .. } => {}
            Action::Dial { .. } => panic!("a bridge dialed with no bridge configured"),
        }
    }
}
