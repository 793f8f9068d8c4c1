//! The conformance suite: one test (or more) per normative statement a server must honour and
//! a client can observe, named `mqtt_<id>_<v311|v5>_<what>` after the statement it checks (see
//! src/coverage.rs for the convention and COVERAGE.md for the result). Tests share one broker
//! (see midge_conformance::target) and keep apart by their client ids and topics.

mod bridge_client;
mod configured;
mod connect;
mod fields;
mod max_qos;
mod options;
mod packet;
mod properties;
mod publish;
mod session;
mod subscribe;
mod websocket;

use midge_conformance::client::{RawClient, connect_packet};
use midge_core::codec::{Connect, ProtocolVersion};
use std::net::SocketAddr;

/// The broker under test.
pub fn addr() -> SocketAddr {
    midge_conformance::target::target(env!("CARGO_BIN_EXE_midge-under-test")).addr()
}

/// A TCP connection to the broker; nothing sent yet.
pub fn open(version: ProtocolVersion) -> RawClient {
    RawClient::open(addr(), version)
}

/// A connected client with a clean session.
pub fn connect(version: ProtocolVersion, client_id: &str) -> RawClient {
    RawClient::connect(addr(), version, client_id)
}

/// A connection whose session outlives it: 3.1.1 clean session 0; 5.0 clean start 0 with a
/// Session Expiry Interval of 60 s. Returns the client and the CONNACK's Session Present.
pub fn connect_persistent(version: ProtocolVersion, client_id: &str) -> (RawClient, bool) {
    let (c, ack) = RawClient::connect_with(addr(), persistent(version, client_id));
    (c, ack.session_present)
}

/// The CONNECT of [`connect_persistent`].
pub fn persistent(version: ProtocolVersion, client_id: &str) -> Connect {
    let mut c = connect_packet(version, client_id);
    c.clean_start = false;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(60);
    }
    c
}

/// Ends a persistent session (a clean connection that is then closed), so it does not linger
/// on a broker the suite shares with others.
pub fn end_session(version: ProtocolVersion, client_id: &str) {
    connect(version, client_id).disconnect();
}
