//! Target `decode_packet`: the wire codec on arbitrary bytes.

use bytes::{Bytes, BytesMut};
use midge_core::codec::{self, Packet, ProtocolVersion};

/// The first byte selects the protocol version (modulo 3: MQTT 3.1, 3.1.1, 5.0); the rest is
/// decoded as a stream of packets, up to the first error or incomplete packet. Every packet the
/// decoder accepts must encode without error and decode back to the same packet, consuming
/// exactly the encoded bytes.
pub fn decode_packet(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let version = match selector % 3 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };

    let mut input = Bytes::copy_from_slice(stream);
    while let Ok(Some((packet, consumed))) = codec::decode(&input, version, u32::MAX) {
        // The smallest MQTT packet is two bytes: a fixed header byte and a zero remaining length.
        assert!(
            (2..=input.len()).contains(&consumed),
            "decode consumed {consumed} of {} available bytes for {packet:?}",
            input.len()
        );
        round_trip(&packet, version);
        input = input.slice(consumed..);
    }
}

/// Encodes a decoded packet and checks that it decodes back unchanged.
fn round_trip(packet: &Packet, version: ProtocolVersion) {
    // A CONNECT is encoded in the protocol version it carries.
    let encode_version = match packet {
        Packet::Connect(connect) => connect.protocol_version,
        _ => version,
    };
    let mut out = BytesMut::new();
    packet
        .encode(encode_version, &mut out)
        .unwrap_or_else(|e| panic!("decoded packet {packet:?} fails to encode: {e:?}"));
    let encoded = out.freeze();
    match codec::decode(&encoded, version, u32::MAX) {
        Ok(Some((again, used))) => {
            assert_eq!(
                &again,
                packet,
                "re-decoding changed the packet; encoding {:02x?}",
                &encoded[..]
            );
            assert_eq!(
                used,
                encoded.len(),
                "re-decoding {packet:?} consumed {used} of {} encoded bytes",
                encoded.len()
            );
        }
        Ok(None) => panic!(
            "encoding of {packet:?} decodes as incomplete: {:02x?}",
            &encoded[..]
        ),
        Err(e) => panic!(
            "encoding of {packet:?} fails to decode: {e:?}; encoding {:02x?}",
            &encoded[..]
        ),
    }
}
