//! A cursor over one packet's body. Fields are split off the front of a [`Bytes`], so strings and
//! payloads share the input buffer instead of being copied. Running past the end is reported as
//! [`DecodeError::Truncated`] for the packet being read, never a panic.

use super::error::DecodeError;
use super::packet::PacketType;
use super::varint::{self, VarInt};
use bytes::{Buf, Bytes};
use bytestring::ByteString;

pub(crate) struct Reader {
    buf: Bytes,
    packet_type: PacketType,
}

impl Reader {
    pub(crate) fn new(buf: Bytes, packet_type: PacketType) -> Reader {
        Reader { buf, packet_type }
    }

    fn truncated(&self) -> DecodeError {
        DecodeError::Truncated(self.packet_type)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.packet_type))
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.buf.try_get_u8().map_err(|_| self.truncated())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.buf.try_get_u16().map_err(|_| self.truncated())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.buf.try_get_u32().map_err(|_| self.truncated())
    }

    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match varint::read(&self.buf)? {
            VarInt::Value(v, n) => {
                self.buf.advance(n);
                Ok(v)
            }
            VarInt::Incomplete => Err(self.truncated()),
        }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.buf.len() {
            return Err(self.truncated());
        }
        Ok(self.buf.split_to(n))
    }

    /// Everything left (a PUBLISH payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Binary data: a two-byte length and that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 string [MQTT-1.5.3-1] [MQTT-1.5.3-2] (3.1.1) [MQTT-1.5.4-1] [MQTT-1.5.4-2] (5.0).
    /// A byte order mark is kept as the character it is [MQTT-1.5.3-3] [MQTT-1.5.4-3].
    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        let raw = self.binary()?;
        to_string(raw)
    }
}

/// Validates bytes as an MQTT string without copying them.
pub(crate) fn to_string(raw: Bytes) -> Result<ByteString, DecodeError> {
    // Rust's UTF-8 validation already rejects encoded surrogates and overlong forms.
    if raw.contains(&0) {
        return Err(DecodeError::NullCharacter);
    }
    ByteString::try_from(raw).map_err(|_| DecodeError::InvalidUtf8)
}

impl Reader {
    /// The packet being read, for error reports.
    pub(crate) fn packet_type(&self) -> PacketType {
        self.packet_type
    }
}
