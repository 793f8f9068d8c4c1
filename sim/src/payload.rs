//! Message payloads: a tag naming the message (its publisher and sequence number) and filler
//! derived from the tag, so that any corruption or mix-up of payloads is caught.

use bytes::{BufMut, Bytes, BytesMut};

/// (publisher, sequence): unique per message of a run.
pub type Tag = (u16, u32);

const MAGIC: u8 = 0xA7;
/// Bytes of the tag at the start of every non-empty payload.
pub const TAG_LEN: usize = 12;

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Normal = 0,
    /// A retained publish to `r/<owner>/<k>`.
    Retained = 1,
    Will = 2,
}

pub fn make(kind: Kind, tag: Tag, len: usize) -> Bytes {
    let len = len.max(TAG_LEN);
    let mut b = BytesMut::with_capacity(len);
    b.put_u8(MAGIC);
    b.put_u8(kind as u8);
    b.put_u16(tag.0);
    b.put_u32(tag.1);
    b.put_u32(len as u32);
    for i in TAG_LEN..len {
        b.put_u8(filler(tag, i));
    }
    b.freeze()
}

fn filler(tag: (u16, u32), i: usize) -> u8 {
    (tag.1 as usize)
        .wrapping_mul(31)
        .wrapping_add(usize::from(tag.0).wrapping_mul(17))
        .wrapping_add(i.wrapping_mul(7)) as u8
}

/// The kind and tag of a payload made by [`make`], checking every byte.
pub fn parse(p: &[u8]) -> Result<(Kind, Tag), &'static str> {
    if p.len() < TAG_LEN || p[0] != MAGIC {
        return Err("payload without a tag");
    }
    let kind = match p[1] {
        0 => Kind::Normal,
        1 => Kind::Retained,
        2 => Kind::Will,
        _ => return Err("payload of an unknown kind"),
    };
    let tag = (
        u16::from_be_bytes([p[2], p[3]]),
        u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
    );
    let len = u32::from_be_bytes([p[8], p[9], p[10], p[11]]) as usize;
    if len != p.len() {
        return Err("payload of the wrong length");
    }
    if (TAG_LEN..len).any(|i| p[i] != filler(tag, i)) {
        return Err("payload bytes changed");
    }
    Ok((kind, tag))
}
