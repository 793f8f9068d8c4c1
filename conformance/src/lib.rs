//! The MQTT 3.1.1 and 5.0 conformance suite for midge: every broker-side normative statement of
//! both specifications is traced to a test that exercises it over the network, so the suite runs
//! against any broker, midge or another, given its address.
//!
//! - [`target`]: the broker under test: the midge daemon started on an ephemeral port, or the
//!   broker `MIDGE_CONFORMANCE_ADDR` names.
//! - [`client`]: a raw MQTT client over TCP or WebSocket on midge-core's codec that also sends
//!   malformed, partial and out-of-order bytes and asserts on exact answers and on closure,
//!   every wait with a deadline.
//! - [`names`]: client ids and topics unique to one test, so tests run in parallel on one broker.
//! - [`scram`]: the client side of SCRAM-SHA-256, for MQTT 5 enhanced authentication.
//! - [`interop`]: a daemon on every transport (TCP, TLS, WebSocket, WebSocket over TLS) for the
//!   interoperability tests with real clients, and the rules for client tools that may be missing.
//! - [`coverage`]: statements.tsv (every statement id and its classification), the tests that
//!   cover each one, and COVERAGE.md.

pub mod client;
pub mod coverage;
pub mod interop;
pub mod names;
pub mod scram;
pub mod target;
