//! The logic of midge's fuzz targets, as plain functions that build on stable.
//!
//! Each function takes the raw input bytes libFuzzer generates and panics only when midge does
//! something wrong: a panic inside midge itself, or a broken invariant the function checks. The
//! binaries in `fuzz_targets/` call them under libFuzzer; `tests/corpora.rs` replays the
//! committed corpora and every crash input found so far through them, on stable, as ordinary
//! tests.
//!
//! | target | function | what it checks |
//! | --- | --- | --- |
//! | `decode_packet` | [`codec::decode_packet`] | decoding never panics; what decodes re-encodes to the same packet |
//! | `broker` | [`broker::run`] | the broker driven by structured operations keeps its invariants after every step |
//! | `recover` | [`persist::recover`] | logs and snapshots of any bytes give a consistent state or a clear error |
//! | `config_files` | [`parsers::config_files`] | mosquitto.conf, password and ACL files of any bytes parse or fail cleanly |
//! | `bridge` | [`bridge::run`] | a broker whose bridge's remote broker is played by the input keeps the bridge's invariants after every step |

pub mod bridge;
pub mod broker;
pub mod codec;
pub mod parsers;
pub mod persist;

/// A target's logic: runs one input, panicking on a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("decode_packet", codec::decode_packet),
    ("broker", broker::run),
    ("recover", persist::recover),
    ("config_files", parsers::config_files),
    ("bridge", bridge::run),
];

/// What an input means to a target, for reading a crash: the operations or records it
/// describes, or its bytes.
pub fn describe(target: &str, data: &[u8]) -> String {
    match target {
        "broker" => broker::describe(data),
        "bridge" => bridge::describe(data),
        "recover" => persist::describe(data),
        "config_files" => format!("{:?}", String::from_utf8_lossy(data)),
        _ => format!("{data:02x?}"),
    }
}
