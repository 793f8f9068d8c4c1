//! The midge daemon as the conformance suite runs it: `midge-under-test -c FILE` loads a
//! mosquitto.conf-style file and assembles the broker exactly as the `midge` binary does, through
//! the same [`daemon::Assembly`] (listeners, bridges, password and ACL files, authenticator),
//! without persistence. It prints one
//! `listening on ADDR` line per listener on stdout once every socket is bound, so the suite can
//! use port 0, and exits when its stdin reaches end of file: the suite holds the other end, so
//! the broker never outlives the test process, however that process ends.

use midge::clock::Clock;
use midge::{config, daemon};
use midge_core::broker::Broker;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match args.as_slice() {
        [flag, file] if flag == "-c" => PathBuf::from(file),
        _ => {
            eprintln!("usage: midge-under-test -c FILE");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("midge-under-test: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path) -> Result<(), String> {
    let config = config::load(path).map_err(|e| e.to_string())?;
    if config.persistence.enabled {
        return Err(
            "persistence is not supported here; the suite runs the broker in memory".into(),
        );
    }
    let assembly = daemon::Assembly::new(&config)?;
    let broker = Broker::new(daemon::broker_config(&config)?);
    let mut server = assembly.bind(broker, Clock::start())?;
    {
        let mut out = std::io::stdout().lock();
        for addr in server.local_addrs() {
            writeln!(out, "listening on {addr}").map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())?;
    }
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let mut reload = || daemon::reload_access(&config);
    server.run(&mut reload).map_err(|e| e.to_string())
}
