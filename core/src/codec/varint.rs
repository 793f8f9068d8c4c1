//! Variable byte integers: seven bits a byte, least significant group first, the high bit saying
//! another byte follows. At most four bytes, so at most 268,435,455.

use super::error::{DecodeError, EncodeError};
use super::writer::Sink;

/// The largest value a variable byte integer can hold.
pub const MAX_VARINT: u32 = 268_435_455;

/// The largest remaining length of a packet (the fixed header's variable byte integer).
pub const MAX_REMAINING_LENGTH: u32 = MAX_VARINT;

/// Outcome of reading a variable byte integer from the start of a possibly incomplete buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarInt {
    /// The value and the number of bytes it took.
    Value(u32, usize),
    /// The buffer ends before the integer does.
    Incomplete,
}

/// Reads a variable byte integer. More than four bytes, or more bytes than the value needs, is
/// malformed [MQTT-1.5.5-1] (5.0); 3.1.1 defines the same minimal four-byte encoding in 2.2.3.
pub(crate) fn read(buf: &[u8]) -> Result<VarInt, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A last byte of zero after other bytes means the value fitted in fewer bytes.
            if i > 0 && byte == 0 {
                return Err(DecodeError::MalformedVarInt);
            }
            return Ok(VarInt::Value(value, i + 1));
        }
        if i == 3 {
            return Err(DecodeError::MalformedVarInt);
        }
    }
    Ok(VarInt::Incomplete)
}

/// The number of bytes `value` takes as a variable byte integer.
pub(crate) const fn len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value` as a variable byte integer.
pub(crate) fn write<S: Sink>(out: &mut S, value: u32) -> Result<(), EncodeError> {
    if value > MAX_VARINT {
        return Err(EncodeError::VarIntTooLarge(value));
    }
    let mut v = value;
    loop {
        let mut byte = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if v == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn boundaries_round_trip() {
        for v in [
            0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MAX_VARINT,
        ] {
            let mut b = BytesMut::new();
            write(&mut b, v).unwrap();
            assert_eq!(b.len(), len(v), "length of {v}");
            assert_eq!(read(&b).unwrap(), VarInt::Value(v, b.len()));
            for cut in 0..b.len() {
                assert_eq!(read(&b[..cut]).unwrap(), VarInt::Incomplete);
            }
        }
    }

    #[test]
    fn mqtt_1_5_5_1_five_bytes_is_malformed() {
        assert_eq!(
            read(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(
            read(&[0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::MalformedVarInt)
        );
    }

    #[test]
    fn mqtt_1_5_5_1_non_minimal_is_malformed() {
        assert_eq!(read(&[0x80, 0x00]), Err(DecodeError::MalformedVarInt));
        assert_eq!(read(&[0xFF, 0x80, 0x00]), Err(DecodeError::MalformedVarInt));
    }

    #[test]
    fn too_large_value_is_refused_on_encode() {
        let mut b = BytesMut::new();
        assert_eq!(
            write(&mut b, MAX_VARINT + 1),
            Err(EncodeError::VarIntTooLarge(MAX_VARINT + 1))
        );
    }
}
