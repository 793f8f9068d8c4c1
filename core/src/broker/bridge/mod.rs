//! Bridges: this broker as a client of another broker, forwarding chosen topics both ways.

mod config;

pub use config::{Backoff, BridgeAddress, BridgeConfig, BridgeDirection, BridgeId, BridgeTopic};
