//! The `midge` binary: reads the command line and configuration, then runs the daemon's event
//! loop. Everything but argument handling lives in the `midge` library.

use midge::clock::Clock;
use midge::config::{self, DaemonConfig, ListenerConfig};
use midge::storage::{self, Recovered};
use midge::{daemon, logging, passwd};
use midge_core::broker::Broker;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const VERSION: &str = env!("CARGO_PKG_VERSION");

const USAGE: &str = "\
midge, an MQTT 3.1, 3.1.1 and 5.0 broker

Usage:
  midge [-c FILE] [-p PORT]... [-v] [--salvage]
                                      run the broker
  midge -c FILE --test-config         check a configuration and exit
  midge passwd [-c] [-b] FILE USER [PASSWORD]
                                      manage a password file (mosquitto_passwd format)
  midge passwd -D FILE USER           delete a user from a password file

Options:
  -c, --config-file FILE  read a mosquitto.conf-style configuration file
  -p, --port PORT         listen on PORT (without -c: on localhost only)
  -t, --test-config       check the configuration (and TLS files) and exit
      --salvage           with persistence: start even if the log is damaged, keeping every
                          record that can be read and logging what was skipped (without it,
                          midge refuses to start on damage a crash does not explain)
  -v, --verbose           log everything
  -h, --help              show this help
  -V, --version           show the version

Without -c, midge listens on localhost port 1883 (IPv4 and IPv6) and allows anonymous
clients, like Mosquitto 2 without a configuration file.";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq, Default)]
struct Options {
    config: Option<PathBuf>,
    ports: Vec<u16>,
    verbose: bool,
    test_config: bool,
    salvage: bool,
    help: bool,
    version: bool,
}

/// Parses the arguments that follow the program name (Mosquitto's options where they exist).
fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-c" | "--config-file" => {
                let file = it.next().ok_or("-c needs a file")?;
                o.config = Some(PathBuf::from(file));
            }
            "-p" | "--port" => {
                let port = it.next().ok_or("-p needs a port")?;
                let port = port
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("invalid port '{port}'"))?;
                o.ports.push(port);
            }
            "-t" | "--test-config" => o.test_config = true,
            "--salvage" => o.salvage = true,
            "-v" | "--verbose" => o.verbose = true,
            "-h" | "--help" => o.help = true,
            "-V" | "--version" => o.version = true,
            "-d" | "--daemon" => {
                return Err("-d is not supported: run midge under a service manager".into());
            }
            other => return Err(format!("unrecognized argument '{other}'")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("passwd") {
        return match passwd::run_passwd_command(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("midge passwd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("midge: {e}\nRun 'midge --help' for usage.");
            return ExitCode::from(2);
        }
    };
    if options.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if options.version {
        println!("midge {VERSION}");
        return ExitCode::SUCCESS;
    }
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("midge: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration the options name, with `-p` ports applied.
fn load_config(options: &Options) -> Result<DaemonConfig, String> {
    let mut config = match &options.config {
        Some(path) => config::load(path).map_err(|e| e.to_string())?,
        None => DaemonConfig::default_local_only(),
    };
    if !options.ports.is_empty() {
        if config.local_only {
            // Like Mosquitto 2 without a configuration file: still localhost only.
            let template = config.listeners.clone();
            config.listeners = options
                .ports
                .iter()
                .flat_map(|&port| {
                    template.iter().cloned().map(move |mut l| {
                        l.port = port;
                        l
                    })
                })
                .collect();
        } else {
            for &port in &options.ports {
                config.listeners.push(plain_listener(port));
            }
        }
    }
    Ok(config)
}

/// A listener on every interface with every option at its default, like Mosquitto's `port`.
fn plain_listener(port: u16) -> ListenerConfig {
    ListenerConfig {
        port,
        bind: None,
        unix_socket: None,
        protocol: Default::default(),
        socket_domain: None,
        tls: None,
        security: Default::default(),
        max_connections: None,
        max_qos: midge_core::codec::QoS::ExactlyOnce,
        defined_at: None,
    }
}

fn run(options: Options) -> Result<(), String> {
    // Everything that can be wrong with the configuration is found before anything listens.
    let config = load_config(&options)?;
    let assembly = daemon::Assembly::new(&config)?;
    if options.test_config {
        for w in &config.warnings {
            eprintln!("midge: warning: {w}");
        }
        println!("configuration OK");
        return Ok(());
    }
    logging::init(&config.log, options.verbose)?;
    tracing::info!("midge {VERSION} starting");
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    #[cfg(unix)]
    daemon::raise_open_files_limit();
    let broker_config = daemon::broker_config(&config)?;
    let clock = Clock::start();
    // The durable state is recovered before anything listens.
    let (broker, storage) = if config.persistence.enabled {
        let storage_options = storage_options(&config);
        let recovered = recover(&config, &storage_options, options.salvage)?;
        let broker = Broker::recover(broker_config, &recovered.state, clock.now());
        (broker, Some((recovered, storage_options)))
    } else {
        (Broker::new(broker_config), None)
    };
    let mut server = assembly.bind(broker, clock)?;
    if let Some((recovered, options)) = storage {
        server.start_storage(recovered, &options).map_err(|e| {
            format!(
                "persistence: cannot write in {}: {e}",
                options.dir.display()
            )
        })?;
    }
    daemon::write_pid_file(&config)?;
    let mut reload = || daemon::reload_access(&config);
    let result = server.run(&mut reload).map_err(|e| e.to_string());
    if let Some(path) = &config.pid_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// How the storage runs, from the persistence options.
fn storage_options(config: &DaemonConfig) -> storage::Options {
    let p = &config.persistence;
    let mut options = storage::Options::new(p.dir());
    options.sync = p.sync;
    options.autosave = (p.autosave_interval > 0).then(|| Duration::from_secs(p.autosave_interval));
    options
}

/// Reads the log back, logging what was found and how long it took.
fn recover(
    config: &DaemonConfig,
    options: &storage::Options,
    salvage: bool,
) -> Result<Recovered, String> {
    let started = Instant::now();
    let mosquitto_db = config.persistence.path();
    if mosquitto_db.is_file() {
        tracing::warn!(
            "{} is a Mosquitto database; midge does not read it (its retained messages and \
             sessions are not loaded). midge keeps its own log in {}",
            mosquitto_db.display(),
            options.dir.display()
        );
    }
    let recovered = storage::recover(&options.dir, salvage).map_err(|e| match e.offset {
        Some(_) => format!(
            "persistence: {e}. This is damage a crash does not leave, so midge refuses to start \
             rather than lose acknowledged state; see the README on persistence. Run midge \
             --salvage to start with everything that can be read (what is skipped is logged)"
        ),
        None => format!("persistence: {e}"),
    })?;
    let state = &recovered.state;
    let (messages, bytes) = state.message_totals();
    tracing::info!(
        "persistence: recovered {} sessions, {messages} messages ({bytes} payload bytes), {} \
         retained, up to LSN {}, from {} in {} ms ({}{} log segments, {} records)",
        state.sessions.len(),
        state.retained.len(),
        state.last_lsn(),
        options.dir.display(),
        started.elapsed().as_millis(),
        match &recovered.report.snapshot {
            Some(path) => format!("snapshot {}, ", path.display()),
            None => String::new(),
        },
        recovered.report.segments,
        recovered.report.records
    );
    if !recovered.report.skipped.is_empty() {
        tracing::error!(
            "persistence: --salvage skipped {} damaged or inconsistent records (listed above); \
             the state may lack acknowledged messages",
            recovered.report.skipped.len()
        );
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options() {
        let o = parse_args(&args("-c /etc/midge.conf -p 1884 -p 1885 -v")).unwrap();
        assert_eq!(o.config, Some(PathBuf::from("/etc/midge.conf")));
        assert_eq!(o.ports, [1884, 1885]);
        assert!(o.verbose);
        assert!(parse_args(&args("--test-config")).unwrap().test_config);
        assert!(parse_args(&args("--salvage")).unwrap().salvage);
        assert!(parse_args(&args("-V")).unwrap().version);
        assert!(parse_args(&args("--help")).unwrap().help);
        assert_eq!(parse_args(&[]).unwrap(), Options::default());
    }

    #[test]
    fn bad_options() {
        assert!(parse_args(&args("-c")).is_err());
        assert!(parse_args(&args("-p 0")).is_err());
        assert!(parse_args(&args("-p x")).is_err());
        assert!(parse_args(&args("--frobnicate")).is_err());
        assert!(parse_args(&args("-d")).is_err());
    }
}
