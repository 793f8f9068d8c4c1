//! DISCONNECT (3.14) and AUTH (3.15).

use super::ProtocolVersion;
use super::error::{DecodeError, EncodeError};
use super::properties::{self, AuthProperties, DisconnectProperties};
use super::publish::{read_reason, write_reason_and_properties};
use super::reader::Reader;
use super::reason::{AuthReason, DisconnectReason};
use super::writer::Sink;

/// DISCONNECT. Before MQTT 5 it has no body; in MQTT 5 either side may send it with a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Not encoded before MQTT 5.
    pub reason: DisconnectReason,
    /// Not encoded before MQTT 5.
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with a reason and no properties.
    pub fn new(reason: DisconnectReason) -> Disconnect {
        Disconnect {
            reason,
            properties: DisconnectProperties::default(),
        }
    }

    /// The body is optional piece by piece: no bytes means Normal Disconnection, and a reason
    /// without properties means no properties (5.0, 3.14.2). Before MQTT 5 any body byte is
    /// trailing garbage, reported by the caller.
    pub(crate) fn read(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut d = Disconnect::new(DisconnectReason::NormalDisconnection);
        if version.is_v5() && !r.is_empty() {
            d.reason = read_reason(r)?;
            if !r.is_empty() {
                d.properties = properties::read(r)?;
            }
        }
        Ok(d)
    }

    pub(crate) fn write<S: Sink>(
        &self,
        out: &mut S,
        v: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        write_reason_and_properties(out, v, self.reason, &self.properties)
    }
}

/// AUTH: a step of MQTT 5 enhanced authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: AuthReason,
    pub properties: AuthProperties,
}

impl Auth {
    /// Optional piece by piece like DISCONNECT (5.0, 3.15.2).
    pub(crate) fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut a = Auth {
            reason: AuthReason::Success,
            properties: AuthProperties::default(),
        };
        if !r.is_empty() {
            a.reason = read_reason(r)?;
            if !r.is_empty() {
                a.properties = properties::read(r)?;
            }
        }
        Ok(a)
    }

    pub(crate) fn write<S: Sink>(&self, out: &mut S) -> Result<(), EncodeError> {
        write_reason_and_properties(out, ProtocolVersion::V5, self.reason, &self.properties)
    }
}
