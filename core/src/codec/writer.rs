//! Where encoded bytes go. Every packet is written by one generic function run twice: once into a
//! [`Counter`] to learn its length, once into the output buffer. The length prefix and the bytes
//! that follow it therefore cannot disagree.

use super::error::EncodeError;
use super::varint;
use bytes::{BufMut, BytesMut};

/// A destination for encoded bytes.
pub(crate) trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_slice(&mut self, s: &[u8]);
}

impl Sink for BytesMut {
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }
    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v);
    }
    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v);
    }
    fn put_slice(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
}

/// A sink that only counts.
#[derive(Debug, Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put_u8(&mut self, _: u8) {
        self.0 += 1;
    }
    fn put_u16(&mut self, _: u16) {
        self.0 += 2;
    }
    fn put_u32(&mut self, _: u32) {
        self.0 += 4;
    }
    fn put_slice(&mut self, s: &[u8]) {
        self.0 += s.len();
    }
}

/// Counts the bytes `write` produces.
pub(crate) fn measure(
    write: impl FnOnce(&mut Counter) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let mut c = Counter::default();
    write(&mut c)?;
    Ok(c.0)
}

/// Binary data: a two-byte length and the bytes.
pub(crate) fn put_binary<S: Sink>(out: &mut S, data: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(data.len()).map_err(|_| EncodeError::FieldTooLong(data.len()))?;
    out.put_u16(len);
    out.put_slice(data);
    Ok(())
}

/// A UTF-8 string: encoded like binary data. Its contents are valid by construction of `str`.
pub(crate) fn put_str<S: Sink>(out: &mut S, s: &str) -> Result<(), EncodeError> {
    put_binary(out, s.as_bytes())
}

/// A variable byte integer.
pub(crate) fn put_varint<S: Sink>(out: &mut S, v: u32) -> Result<(), EncodeError> {
    varint::write(out, v)
}
