//! The midge daemon: a thin, single-threaded mio event loop that owns sockets, TLS, files and
//! timers and feeds midge-core's sans-IO broker. Protocol logic lives in midge-core; this crate
//! only moves bytes, reads configuration and credentials, and carries out what the broker asks.

pub mod access;
pub mod acl;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dial;
pub mod logging;
pub mod passwd;
pub mod server;
mod signals;
pub mod storage;
pub mod tls;
pub mod transport;
