//! Log output as mosquitto.conf describes it: `log_type` sets how much, `log_dest` where
//! (stdout, stderr, a file; several at once), `log_timestamp` whether lines carry the time, and
//! `connection_messages` whether each client's connect and disconnect is logged.

use crate::config::{LogConfig, LogDest};
use midge_core::broker::CONNECTIONS;
use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::sync::Arc;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::prelude::*;

/// Installs the global log subscriber. `verbose` (`-v`) logs everything, like Mosquitto's.
pub fn init(log: &LogConfig, verbose: bool) -> Result<(), String> {
    let level = if verbose {
        LevelFilter::DEBUG
    } else {
        level(log)
    };
    let mut filter = Targets::new().with_default(level);
    if !log.connection_messages {
        filter = filter.with_target(CONNECTIONS, LevelFilter::OFF);
    }
    let mut writer: Option<BoxMakeWriter> = None;
    let mut ansi = false;
    for dest in &log.dest {
        let next = match dest {
            LogDest::Stdout => {
                ansi |= std::io::stdout().is_terminal();
                BoxMakeWriter::new(std::io::stdout)
            }
            LogDest::Stderr => {
                ansi |= std::io::stderr().is_terminal();
                BoxMakeWriter::new(std::io::stderr)
            }
            LogDest::File(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("log_dest file {}: {e}", path.display()))?;
                BoxMakeWriter::new(Arc::new(file))
            }
        };
        writer = Some(match writer {
            None => next,
            Some(w) => BoxMakeWriter::new(w.and(next)),
        });
    }
    let writer = writer.unwrap_or_else(|| BoxMakeWriter::new(std::io::stderr));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    let layer = if log.timestamp {
        layer.boxed()
    } else {
        layer.without_time().boxed()
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))
}

/// The most detailed level `log_type` asks for.
fn level(log: &LogConfig) -> LevelFilter {
    let t = &log.types;
    if t.debug {
        LevelFilter::DEBUG
    } else if t.information || t.notice || t.subscribe || t.unsubscribe || t.websockets {
        LevelFilter::INFO
    } else if t.warning {
        LevelFilter::WARN
    } else if t.error {
        LevelFilter::ERROR
    } else {
        LevelFilter::OFF
    }
}
