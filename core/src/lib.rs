//! midge-core is the heart of the midge MQTT broker: a pure, single-threaded, sans-IO state machine
//! and the MQTT 3.1, 3.1.1 and 5.0 wire codec it speaks. It owns no sockets, clocks, threads or
//! files: drivers (the `midge` daemon, the simulator) feed it bytes, connection events and time, and
//! carry out what it asks for. Everything here is deterministic, so the same inputs always produce
//! the same outputs, byte for byte.

pub mod auth;
pub mod broker;
#[cfg(feature = "sim-bugs")]
pub mod bugs;
pub mod codec;
pub mod persist;
