//! Mosquitto-compatible configuration files (mosquitto.conf).
//!
//! midge reads the configuration file a Mosquitto 2 installation already has, so that replacing
//! the broker needs no edits to it. [`load`] reads a file, [`parse_str`] parses text, and
//! [`DaemonConfig::default_local_only`] is what running `midge` without a file means.
//!
//! # File format
//!
//! As in Mosquitto: one option per line, the option name first and its value after it; a line
//! whose first non-blank character is `#` is a comment; blank lines are skipped. Options whose
//! value is a path or a name (`password_file`, `certfile`, `persistence_location`,
//! `auto_id_prefix`, ...) take the rest of the line, so paths may contain spaces. Options whose
//! value is a number, a boolean or a keyword take one word; a word starting with `#` after it
//! starts a comment, and other extra words are ignored with a warning (Mosquitto ignores them
//! silently). Booleans are `true`/`false` (Mosquitto also reads `1`/`0`, so midge does too).
//!
//! # Listeners
//!
//! A `listener PORT [ADDRESS]` line starts a listener; the listener options after it (see
//! [`ListenerConfig`]) apply to it until the next `listener` line or the end of the file. Each
//! file starts outside any listener, as in Mosquitto: listener options before the first
//! `listener` line of a file configure the *default listener*, the one the deprecated `port`
//! and `bind_address` options also configure. The default listener is started (on port 1883
//! unless `port` says otherwise, on all interfaces unless `bind_address` says otherwise) when
//! something configures it and the configuration is not local-only. `listener 0 PATH` is a
//! Unix socket listener; `listener 0 IP-ADDRESS` (a literal address, not a host name) listens
//! on a TCP port the system picks, logged at startup.
//!
//! With no `listener`, `port` or `bind_address` at all, the configuration is *local-only*, as in
//! Mosquitto 2: midge listens on port 1883 of 127.0.0.1 and ::1 only, allows anonymous clients,
//! and ignores (with a warning) the listener options it was given.
//!
//! # Security options
//!
//! `allow_anonymous`, `password_file`, `acl_file`, `allow_zero_length_clientid` and
//! `auto_id_prefix` are global unless `per_listener_settings true` is set before them, in which
//! case they apply to the listener being defined. Once any listener is configured explicitly,
//! anonymous clients are refused unless `allow_anonymous true` says otherwise (Mosquitto 2).
//! midge applies `allow_zero_length_clientid` and `auto_id_prefix` broker-wide, so with
//! per-listener settings every listener must agree on them.
//!
//! # Supported options
//!
//! - Listeners: `listener`, `port`, `bind_address`, `protocol` (mqtt, websockets),
//!   `socket_domain`, `max_connections`, `max_qos` (and its alias `maximum_qos`), `certfile`,
//!   `keyfile`, `cafile`, `capath`, `require_certificate`, `use_identity_as_username`,
//!   `tls_version`.
//! - Security: `per_listener_settings`, `allow_anonymous`, `password_file`, `acl_file`,
//!   `allow_zero_length_clientid`, `auto_id_prefix`.
//! - Broker limits: `global_max_connections`, `max_inflight_messages`, `max_keepalive`,
//!   `max_packet_size`, `max_queued_bytes`, `max_queued_messages`, `message_size_limit`,
//!   `queue_qos0_messages`, `retain_available`, `sys_interval`, `set_tcp_nodelay`,
//!   `max_topic_alias` (a listener option in Mosquitto, global in midge), `max_topic_alias_broker`.
//! - Persistence: `persistence` (and its alias `retained_persistence`), `persistence_location`,
//!   `persistence_file` (read, but midge keeps its own files; see below), `autosave_interval`.
//! - Logging: `log_type`, `log_dest` (stdout, stderr, file, none), `connection_messages`,
//!   `log_timestamp`.
//! - Process: `pid_file`, `include_dir`; `user` and `persistent_client_expiration` are recorded
//!   with a warning that midge does not act on them yet.
//! - Bridges: `connection` and the bridge options after it; see [`bridge`].
//!
//! # midge extensions
//!
//! Options Mosquitto does not have, so a mosquitto.conf never contains them (Mosquitto refuses
//! them as unknown):
//!
//! - `persistence_sync always|periodic [MS]`: when a record of the persistence log counts as
//!   durable. `always` (the default) acknowledges a message only once its record is fsynced;
//!   `periodic` acknowledges once it is written (safe from a crash of midge, not from a power
//!   loss or kernel crash, which can lose what was acknowledged in the last MS milliseconds)
//!   and fsyncs every MS milliseconds (default 1000).
//!
//! With `persistence true`, midge keeps a write-ahead log and snapshots in
//! `persistence_location` (`midge-*.log`, `midge-*.snap`) instead of Mosquitto's single
//! database file: `persistence_file` names nothing midge writes, and an existing Mosquitto
//! database is not read. `autosave_interval` (seconds, 0 for none) is how often a snapshot
//! compacts the log; the log itself is written as changes happen.
//!
//! Special values are Mosquitto's: `max_connections -1` and `global_max_connections -1` mean no
//! limit; `max_inflight_messages`, `max_queued_messages`, `max_queued_bytes` and
//! `message_size_limit` 0 mean no limit; `max_keepalive` 0 or 65535 means no limit.
//!
//! # Options midge does not implement
//!
//! Ignoring an option is only safe when the broker still does what the user relies on. midge
//! therefore refuses to start (an error naming the file and line) when ignoring an option would
//! weaken security or silently drop behaviour, and only warns when ignoring it is harmless. An
//! option set to the value that matches what midge does anyway (`use_username_as_clientid
//! false`, `tls_keyform pem`, ...) is accepted silently. Options midge does not know at
//! all are warned about and ignored.
//!
//! | Class | Options | Why |
//! |-------|---------|-----|
//! | error | `auth_plugin`, `plugin`, `global_plugin`, `auth_opt_*`, `plugin_opt_*`, `auth_plugin_deny_special_chars` | plugins decide who may connect and what they may do; without them clients would get in or through |
//! | error | `psk_hint`, `psk_file` | the listener would run without the TLS-PSK encryption and authentication it was given |
//! | error | `crlfile` | revoked client certificates would be accepted |
//! | error | `use_subject_as_username`, `use_username_as_clientid`, `clientid_prefixes` | they change who a client is, or which clients may connect |
//! | error | `bind_interface` | the listener would accept connections on every interface |
//! | error | `mount_point` | clients of the listener would see and publish to other topics |
//! | error | `accept_protocol_versions`, `websockets_origin`, `disable_client_cert_date_checks` | clients would be allowed what the configuration forbids, or refused what it allows |
//! | error | `tls_engine`, `tls_keyform engine`, `tls_engine_kpass_sha1` | the key lives in an OpenSSL engine midge cannot use |
//! | error | bridge options midge does not implement: `start_type lazy/once`, `local_username`, `local_password`, `bridge_outgoing_retain false`, `bridge_max_packet_size`, `bridge_bind_address`, `bridge_identity`, `bridge_psk`, `bridge_require_ocsp true`, other `bridge_*` | the bridge would carry other messages, or connect otherwise, than configured (see [`bridge`]) |
//! | warning | `ciphers`, `ciphers_tls1.3`, `dhparamfile` | midge's TLS library offers only AEAD suites with forward secrecy (and no finite-field DHE), the suites such lists are written to keep |
//! | warning | `autosave_on_changes`, `persistent_client_expiration`, `upgrade_outgoing_qos`, `check_retain_source`, `allow_duplicate_messages` | delivery and persistence details with no effect on who may do what |
//! | warning | `memory_limit`, `max_inflight_bytes`, `global_max_clients`, `websockets_headers_size` | limits midge bounds its own way |
//! | warning | `http_dir`, `websockets_log_level`, `log_facility`, `log_timestamp_format`, `log_dest syslog/topic/dlt`, `quic_log_level`, `enable_control_api` | serving files over HTTP, logging details and administration interfaces |
//! | warning | `retry_interval`, `store_clean_interval` | removed from Mosquitto 2 as well |
//! | warning | `user` | recorded, but midge does not drop privileges yet |
//!
//! [`UNSUPPORTED_OPTIONS`] holds the per-option reasons the messages quote.
//!
//! # Where midge differs from Mosquitto
//!
//! Every configuration Mosquitto 2 accepts either means the same to midge or is refused (or
//! warned about) as described above. Beyond that, midge is stricter or clearer where Mosquitto is
//! lax:
//! - numbers must be numbers (Mosquitto reads `port abc` as port 0), and values may be separated
//!   by any whitespace, not only single spaces;
//! - a relative `include_dir` is resolved against the directory of the file that names it, not
//!   the working directory, so the configuration means the same wherever midge is started;
//! - TLS options on a listener without both `certfile` and `keyfile` are an error, since that
//!   listener would not use TLS;
//! - an explicit `allow_anonymous false` is honoured in local-only mode (Mosquitto forces it to
//!   true there), and with per-listener settings the security options given before any
//!   `listener` line apply to the local-only listeners instead of being dropped;
//! - `tls_version tlsv1.1` is read as TLS 1.2 minimum with a warning: midge's TLS library
//!   implements nothing older;
//! - `max_packet_size 0` means no limit (Mosquitto refuses values below 20);
//! - when every configured log destination is unsupported (`syslog` alone, say), midge logs to
//!   stderr, which a service manager collects, rather than nowhere.

mod bridge;

pub use bridge::{BridgeLink, BridgeTls, FileAt};

use std::fmt;
use std::fs;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use crate::storage::SyncMode;
use midge_core::broker::Config;
use midge_core::codec::{MAX_PACKET_SIZE, QoS};
use std::time::Duration;

/// Port of the default listener and of the local-only listeners.
pub const DEFAULT_PORT: u16 = 1883;

/// Largest PUBLISH payload MQTT can carry, the ceiling of `message_size_limit`.
const MQTT_MAX_PAYLOAD: u32 = 268_435_455;

/// Smallest `max_packet_size` Mosquitto accepts: anything smaller cannot hold a useful packet.
const MIN_PACKET_SIZE: i64 = 20;

// ------------------------------------------------------------------------------------------
// The configuration
// ------------------------------------------------------------------------------------------

/// Everything a mosquitto.conf says, as the daemon needs it.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The broker's limits and switches (max_packet_size, max_inflight_messages,
    /// max_queued_messages, max_queued_bytes, queue_qos0_messages, max_keepalive,
    /// retain_available, allow_zero_length_clientid, auto_id_prefix, global_max_connections,
    /// sys_interval). `client_id_seed` is left zero: the daemon seeds it from the operating
    /// system.
    pub broker: Config,
    /// The listeners to open, in the order the file defines them, the default listener (if
    /// any) last. Never empty: with no listener configured, the two local-only listeners.
    pub listeners: Vec<ListenerConfig>,
    /// No `listener`, `port` or `bind_address` was given: midge listens on localhost only and
    /// anonymous clients are allowed unless `allow_anonymous false` says otherwise.
    pub local_only: bool,
    /// Security options are per listener ([`ListenerConfig::security`]) rather than global
    /// ([`DaemonConfig::security`]). Use [`DaemonConfig::security_for`] to get the right one.
    pub per_listener_settings: bool,
    /// The global security options, used when `per_listener_settings` is false.
    pub security: SecurityConfig,
    /// Where and how often the broker's state is saved.
    pub persistence: PersistenceConfig,
    /// Seconds between `$SYS` updates; 0 turns them off. Mosquitto's default is 10. The same
    /// value is in `broker.sys_interval`, since the broker publishes `$SYS` itself.
    pub sys_interval: u64,
    /// Set TCP_NODELAY on client sockets (`set_tcp_nodelay`, default false).
    pub set_tcp_nodelay: bool,
    /// Logging options.
    pub log: LogConfig,
    /// File to write the process id to (`pid_file`).
    pub pid_file: Option<PathBuf>,
    /// User Mosquitto would switch to (`user`). Recorded only: midge does not drop privileges
    /// yet, and a warning says so.
    pub user: Option<String>,
    /// Seconds after which Mosquitto would expire disconnected persistent sessions
    /// (`persistent_client_expiration`). Recorded only: midge does not expire them yet, and a
    /// warning says so.
    pub persistent_client_expiration: Option<u64>,
    /// The daemon's side of each bridge (its TLS settings), in the order of
    /// `broker.bridges`, which holds the broker's side.
    pub bridges: Vec<BridgeLink>,
    /// The configuration files read, main file first, then included files in the order read.
    pub files: Vec<PathBuf>,
    /// Options ignored because ignoring them is harmless, with where they were given. The daemon
    /// logs these at startup.
    pub warnings: Vec<ConfigWarning>,
}

impl DaemonConfig {
    /// What `midge` without a configuration file means, as Mosquitto 2 without one: listen on
    /// port 1883 of 127.0.0.1 and ::1 only, and allow anonymous clients.
    pub fn default_local_only() -> DaemonConfig {
        let mut config = DaemonConfig::without_listeners();
        config.listeners = local_only_listeners(&SecurityConfig::default());
        config
    }

    /// Every option at its default, no listener yet.
    fn without_listeners() -> DaemonConfig {
        DaemonConfig {
            broker: Config {
                // Mosquitto's default; the broker's own default of 0 suits tests.
                sys_interval: 10,
                ..Config::default()
            },
            listeners: Vec::new(),
            local_only: true,
            per_listener_settings: false,
            security: SecurityConfig::default(),
            persistence: PersistenceConfig::default(),
            sys_interval: 10,
            set_tcp_nodelay: false,
            log: LogConfig::default(),
            pid_file: None,
            user: None,
            persistent_client_expiration: None,
            bridges: Vec::new(),
            files: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The security options that govern clients of `listener`: its own with
    /// `per_listener_settings`, the global ones otherwise.
    pub fn security_for<'a>(&'a self, listener: &'a ListenerConfig) -> &'a SecurityConfig {
        if self.per_listener_settings {
            &listener.security
        } else {
            &self.security
        }
    }

    /// Whether clients of `listener` may connect without a username.
    pub fn allow_anonymous(&self, listener: &ListenerConfig) -> bool {
        self.security_for(listener)
            .effective_allow_anonymous(self.local_only)
    }
}

/// One socket to listen on, and how to treat the clients that connect to it.
///
/// Listener options, which apply to the listener being defined: `port` (default listener only),
/// `bind_address` (default listener only), `protocol`, `socket_domain`, `max_connections`,
/// `max_qos`, `certfile`, `keyfile`, `cafile`, `capath`, `require_certificate`,
/// `use_identity_as_username`, `tls_version`; with `per_listener_settings`, also the security
/// options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// TCP port; 0 for a Unix socket listener, or for a port the system picks.
    pub port: u16,
    /// Address or host name to bind to; `None` means every interface.
    pub bind: Option<String>,
    /// Path of the Unix socket, for `listener 0 PATH`.
    pub unix_socket: Option<PathBuf>,
    /// What clients speak on this listener.
    pub protocol: ListenerProtocol,
    /// Restrict the listener to IPv4 or IPv6 (`socket_domain`); `None` means both.
    pub socket_domain: Option<SocketDomain>,
    /// TLS, when `certfile` and `keyfile` are given.
    pub tls: Option<TlsConfig>,
    /// This listener's security options; only meaningful with `per_listener_settings` (see
    /// [`DaemonConfig::security_for`]).
    pub security: SecurityConfig,
    /// Most simultaneous connections on this listener; `None` means no limit (Mosquitto's -1).
    pub max_connections: Option<usize>,
    /// The highest QoS the listener's clients may use (`max_qos`, default 2): announced to
    /// MQTT 5 clients in CONNACK, the cap of every subscription granted on the listener; a will
    /// or a PUBLISH above it refuses or closes the connection. Read at startup only.
    pub max_qos: QoS,
    /// The line that defined the listener, for messages about it; `None` for the local-only
    /// listeners, which no line defines.
    pub defined_at: Option<Location>,
}

impl ListenerConfig {
    /// A plain MQTT listener with every option at its default.
    fn plain(port: u16) -> ListenerConfig {
        ListenerConfig {
            port,
            bind: None,
            unix_socket: None,
            protocol: ListenerProtocol::Mqtt,
            socket_domain: None,
            tls: None,
            security: SecurityConfig::default(),
            max_connections: None,
            max_qos: QoS::ExactlyOnce,
            defined_at: None,
        }
    }
}

impl fmt::Display for ListenerConfig {
    /// "port 8883 on 0.0.0.0 (mqtt, TLS)", for log lines about the listener.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.unix_socket, &self.bind) {
            (Some(path), _) => write!(f, "unix socket {}", path.display())?,
            (None, Some(bind)) => write!(f, "port {} on {bind}", self.port)?,
            (None, None) => write!(f, "port {} on all interfaces", self.port)?,
        }
        let protocol = match self.protocol {
            ListenerProtocol::Mqtt => "mqtt",
            ListenerProtocol::WebSockets => "websockets",
        };
        let tls = if self.tls.is_some() { ", TLS" } else { "" };
        write!(f, " ({protocol}{tls})")
    }
}

/// What clients speak on a listener (`protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerProtocol {
    /// MQTT directly over TCP (or TLS, or a Unix socket).
    #[default]
    Mqtt,
    /// MQTT over WebSockets.
    WebSockets,
}

/// Address family a listener is restricted to (`socket_domain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketDomain {
    /// IPv4 only.
    Ipv4,
    /// IPv6 only.
    Ipv6,
}

/// TLS settings of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain the listener presents.
    pub certfile: PathBuf,
    /// PEM private key of `certfile`.
    pub keyfile: PathBuf,
    /// PEM file of CA certificates client certificates are checked against.
    pub cafile: Option<PathBuf>,
    /// Directory of PEM CA certificates client certificates are checked against.
    pub capath: Option<PathBuf>,
    /// Refuse clients without a valid certificate (`require_certificate`).
    pub require_certificate: bool,
    /// Use the client certificate's Common Name as the username (`use_identity_as_username`).
    pub use_identity_as_username: bool,
    /// Oldest TLS version accepted (`tls_version`, a minimum as in Mosquitto 2); `None` means
    /// TLS 1.2 and 1.3.
    pub tls_version: Option<TlsVersion>,
}

/// Oldest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// `tlsv1.2`: TLS 1.2 and 1.3.
    Tlsv1_2,
    /// `tlsv1.3`: TLS 1.3 only.
    Tlsv1_3,
}

/// Authentication and access control options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    /// `allow_anonymous` as written; `None` when not set. See
    /// [`SecurityConfig::effective_allow_anonymous`].
    pub allow_anonymous: Option<bool>,
    /// Mosquitto password file (`password_file`).
    pub password_file: Option<PathBuf>,
    /// Mosquitto ACL file (`acl_file`).
    pub acl_file: Option<PathBuf>,
}

impl SecurityConfig {
    /// Whether anonymous clients are allowed. When `allow_anonymous` is not set, Mosquitto 2
    /// allows them only in local-only mode: once a listener is configured explicitly, clients
    /// must authenticate unless the configuration says otherwise.
    pub fn effective_allow_anonymous(&self, local_only: bool) -> bool {
        self.allow_anonymous.unwrap_or(local_only)
    }
}

/// Persistence options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistenceConfig {
    /// Save the broker's state to disk (`persistence`, default false).
    pub enabled: bool,
    /// Directory of the database (`persistence_location`); empty means the working directory.
    pub location: PathBuf,
    /// File name of the database (`persistence_file`, default `mosquitto.db`).
    pub file: PathBuf,
    /// Seconds between snapshots of the log (`autosave_interval`, default 1800); 0 means
    /// snapshots only as the log grows. (Mosquitto saves its whole database this often.)
    pub autosave_interval: u64,
    /// When records count as durable (`persistence_sync`, a midge extension).
    pub sync: SyncMode,
}

impl PersistenceConfig {
    /// Where Mosquitto's database lives: `location` joined with `file`.
    pub fn path(&self) -> PathBuf {
        self.location.join(&self.file)
    }

    /// The directory of midge's log and snapshots: `location`, or the working directory.
    pub fn dir(&self) -> PathBuf {
        if self.location.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            self.location.clone()
        }
    }
}

impl Default for PersistenceConfig {
    fn default() -> PersistenceConfig {
        PersistenceConfig {
            enabled: false,
            location: PathBuf::new(),
            file: PathBuf::from("mosquitto.db"),
            autosave_interval: 1800,
            sync: SyncMode::Always,
        }
    }
}

/// Logging options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Which kinds of message are logged (`log_type`).
    pub types: LogTypes,
    /// Where they go (`log_dest`); empty means nowhere (`log_dest none`).
    pub dest: Vec<LogDest>,
    /// Log clients connecting and disconnecting (`connection_messages`, default true).
    pub connection_messages: bool,
    /// Prefix log lines with a timestamp (`log_timestamp`, default true).
    pub timestamp: bool,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            types: LogTypes::default(),
            dest: vec![LogDest::Stderr],
            connection_messages: true,
            timestamp: true,
        }
    }
}

/// The kinds of message logged, one switch per `log_type` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogTypes {
    /// `error`.
    pub error: bool,
    /// `warning`.
    pub warning: bool,
    /// `notice`.
    pub notice: bool,
    /// `information`.
    pub information: bool,
    /// `debug`.
    pub debug: bool,
    /// `subscribe`: each subscription.
    pub subscribe: bool,
    /// `unsubscribe`: each unsubscription.
    pub unsubscribe: bool,
    /// `websockets`: WebSocket transport details.
    pub websockets: bool,
}

impl LogTypes {
    /// `log_type none`.
    pub const NONE: LogTypes = LogTypes {
        error: false,
        warning: false,
        notice: false,
        information: false,
        debug: false,
        subscribe: false,
        unsubscribe: false,
        websockets: false,
    };

    /// `log_type all`.
    pub const ALL: LogTypes = LogTypes {
        error: true,
        warning: true,
        notice: true,
        information: true,
        debug: true,
        subscribe: true,
        unsubscribe: true,
        websockets: true,
    };
}

impl Default for LogTypes {
    /// Mosquitto's default: error, warning, notice and information.
    fn default() -> LogTypes {
        LogTypes {
            error: true,
            warning: true,
            notice: true,
            information: true,
            ..LogTypes::NONE
        }
    }
}

/// A place log messages go (`log_dest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDest {
    /// `stdout`.
    Stdout,
    /// `stderr`, the default.
    Stderr,
    /// `file PATH`.
    File(PathBuf),
}

/// A line of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// The line, counting from 1.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A configuration the daemon must not start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file at fault.
    pub file: PathBuf,
    /// The line at fault, counting from 1; 0 when the problem is not on one line.
    pub line: usize,
    /// What is wrong, and where useful, what to do about it.
    pub message: String,
}

impl ConfigError {
    fn new(file: &Path, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    fn at(location: &Location, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&location.file, location.line, message)
    }
}

impl fmt::Display for ConfigError {
    /// "FILE:LINE: message", or "FILE: message" when no line is at fault.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, &self.file, self.line, &self.message)
    }
}

impl std::error::Error for ConfigError {}

/// An option ignored because ignoring it is harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file the option is in.
    pub file: PathBuf,
    /// Its line, counting from 1; 0 when the warning is not about one line.
    pub line: usize,
    /// What is ignored, and why that is harmless.
    pub message: String,
}

impl ConfigWarning {
    fn at(location: &Location, message: impl Into<String>) -> ConfigWarning {
        ConfigWarning {
            file: location.file.clone(),
            line: location.line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigWarning {
    /// "FILE:LINE: message", or "FILE: message" when no line is concerned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, &self.file, self.line, &self.message)
    }
}

fn write_located(
    f: &mut fmt::Formatter<'_>,
    file: &Path,
    line: usize,
    message: &str,
) -> fmt::Result {
    if line == 0 {
        write!(f, "{}: {message}", file.display())
    } else {
        write!(f, "{}:{line}: {message}", file.display())
    }
}

// ------------------------------------------------------------------------------------------
// Options midge does not implement
// ------------------------------------------------------------------------------------------

/// What midge does with an option it does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// Ignoring it is harmless: warn and carry on.
    Warn,
    /// Ignoring it would weaken security or drop behaviour the user relies on: refuse to start.
    Refuse,
}

/// A Mosquitto option midge does not implement, and why it is treated as it is.
#[derive(Debug, Clone, Copy)]
pub struct UnsupportedOption {
    /// The option's name; a trailing `*` matches every option starting with what precedes it.
    pub name: &'static str,
    /// Warn or refuse.
    pub class: Unsupported,
    /// The value at which the option asks for what midge does anyway, accepted silently.
    pub inert_value: Option<&'static str>,
    /// Why, quoted in the warning or error.
    pub reason: &'static str,
}

const fn refuse(
    name: &'static str,
    inert_value: Option<&'static str>,
    reason: &'static str,
) -> UnsupportedOption {
    UnsupportedOption {
        name,
        class: Unsupported::Refuse,
        inert_value,
        reason,
    }
}

const fn warn(
    name: &'static str,
    inert_value: Option<&'static str>,
    reason: &'static str,
) -> UnsupportedOption {
    UnsupportedOption {
        name,
        class: Unsupported::Warn,
        inert_value,
        reason,
    }
}

const PLUGINS: &str = "plugins are not supported; without the plugin, clients it would refuse \
                       could connect, publish or subscribe";
const PSK: &str = "TLS-PSK is not supported; the listener would run without the encryption and \
                   authentication the pre-shared keys provide";
const BRIDGES: &str = "midge's bridges do not have this option; ignoring it would change what \
                       the bridge carries or how it connects";
const TLS_ENGINE: &str = "keys held in an OpenSSL engine cannot be used; the listener could not \
                          serve TLS as configured";
const CIPHERS: &str = "midge's TLS library offers only AEAD cipher suites with forward secrecy \
                       (TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305, and TLS 1.3), the suites \
                       cipher lists are written to keep";
const LIMIT: &str = "midge bounds this resource its own way";
const LOGGING: &str = "a logging detail; midge logs as its other log options say";
const REMOVED: &str = "Mosquitto 2 no longer has this option either";

/// The Mosquitto options midge does not implement, with what it does about each.
pub const UNSUPPORTED_OPTIONS: &[UnsupportedOption] = &[
    // Authentication and access control.
    refuse("auth_plugin", None, PLUGINS),
    refuse("plugin", None, PLUGINS),
    refuse("global_plugin", None, PLUGINS),
    refuse("auth_opt_*", None, PLUGINS),
    refuse("plugin_opt_*", None, PLUGINS),
    refuse("auth_plugin_deny_special_chars", None, PLUGINS),
    refuse("psk_hint", None, PSK),
    refuse("psk_file", None, PSK),
    refuse(
        "crlfile",
        None,
        "certificate revocation lists are not supported; revoked client certificates would be \
         accepted",
    ),
    refuse(
        "use_subject_as_username",
        Some("false"),
        "using the certificate subject as the username is not supported; clients would be \
         known by another name to the password file and ACLs",
    ),
    refuse(
        "use_username_as_clientid",
        Some("false"),
        "replacing client ids with usernames is not supported; clients could take over each \
         other's sessions and ACL patterns on %c would match other clients",
    ),
    refuse(
        "clientid_prefixes",
        None,
        "restricting client ids to prefixes is not supported; clients it refuses could connect",
    ),
    refuse(
        "bind_interface",
        None,
        "binding a listener to a network interface is not supported; the listener would accept \
         connections on every interface (bind to the interface's address instead)",
    ),
    refuse(
        "mount_point",
        None,
        "mount points are not supported; clients of the listener would see and publish to \
         other topics than the configuration gives them",
    ),
    refuse(
        "accept_protocol_versions",
        None,
        "restricting a listener's protocol versions is not supported; clients of every MQTT \
         version would be accepted",
    ),
    refuse(
        "websockets_origin",
        None,
        "WebSocket Origin checks are not supported; web pages from any site could connect",
    ),
    refuse(
        "disable_client_cert_date_checks",
        Some("false"),
        "midge always checks certificate dates; clients with expired certificates the \
         configuration accepts would be refused",
    ),
    refuse("tls_engine", None, TLS_ENGINE),
    refuse("tls_keyform", Some("pem"), TLS_ENGINE),
    refuse("tls_engine_kpass_sha1", None, TLS_ENGINE),
    // Bridge options of later Mosquitto versions.
    refuse("bridge_*", None, BRIDGES),
    // TLS details.
    warn("ciphers", None, CIPHERS),
    warn("ciphers_tls1.3", None, CIPHERS),
    warn(
        "dhparamfile",
        None,
        "midge's TLS library offers no finite-field Diffie-Hellman suites, so DH parameters \
         are never used",
    ),
    // Delivery and persistence details.
    warn(
        "autosave_on_changes",
        Some("false"),
        "midge writes every change to its log as it happens; autosave_interval only sets how \
         often the log is compacted",
    ),
    warn(
        "upgrade_outgoing_qos",
        Some("false"),
        "messages are delivered at the QoS MQTT specifies, never upgraded",
    ),
    warn(
        "check_retain_source",
        Some("false"),
        "retained messages are delivered without re-checking their publisher's access",
    ),
    warn(
        "allow_duplicate_messages",
        None,
        "deprecated in Mosquitto 2; midge delivers overlapping subscriptions as MQTT specifies",
    ),
    // Limits.
    warn("memory_limit", Some("0"), LIMIT),
    warn("max_inflight_bytes", Some("0"), LIMIT),
    warn("global_max_clients", None, LIMIT),
    warn("websockets_headers_size", None, LIMIT),
    // Serving, logging and administration.
    warn(
        "http_dir",
        None,
        "midge does not serve files over HTTP; WebSocket clients are unaffected",
    ),
    warn("websockets_log_level", None, LOGGING),
    warn("log_facility", None, LOGGING),
    warn("log_timestamp_format", None, LOGGING),
    warn("quic_log_level", None, LOGGING),
    warn(
        "enable_control_api",
        Some("false"),
        "the $CONTROL administration API is not supported",
    ),
    // Gone from Mosquitto too.
    warn("retry_interval", None, REMOVED),
    warn("store_clean_interval", None, REMOVED),
];

/// The entry of [`UNSUPPORTED_OPTIONS`] for `option`, if any.
pub fn unsupported_option(option: &str) -> Option<&'static UnsupportedOption> {
    UNSUPPORTED_OPTIONS
        .iter()
        .find(|entry| match entry.name.strip_suffix('*') {
            Some(prefix) => option.starts_with(prefix),
            None => option == entry.name,
        })
}

impl UnsupportedOption {
    /// Whether `value` asks for what midge does anyway. Booleans compare as booleans, so
    /// `false` and `0` are the same value.
    fn is_inert(&self, value: Option<&str>) -> bool {
        let (Some(inert), Some(value)) = (self.inert_value, value) else {
            return false;
        };
        inert.eq_ignore_ascii_case(value)
            || matches!((parse_bool(inert), parse_bool(value)), (Some(a), Some(b)) if a == b)
    }
}

// ------------------------------------------------------------------------------------------
// Entry points
// ------------------------------------------------------------------------------------------

/// Reads the configuration file at `path`, and the files its `include_dir` names.
pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
    let mut parser = Parser::new(path);
    parser.read_file(path, 0)?;
    parser.finish()
}

/// Parses configuration text. `origin` names it in messages, and relative `include_dir`
/// directories are resolved against its directory.
pub fn parse_str(text: &str, origin: &Path) -> Result<DaemonConfig, ConfigError> {
    let mut parser = Parser::new(origin);
    parser.parse_text(text.as_bytes(), origin, 0)?;
    parser.finish()
}

/// The listeners of local-only mode: port 1883 on the IPv4 and IPv6 loopback addresses.
fn local_only_listeners(security: &SecurityConfig) -> Vec<ListenerConfig> {
    [
        ("127.0.0.1", SocketDomain::Ipv4),
        ("::1", SocketDomain::Ipv6),
    ]
    .into_iter()
    .map(|(address, domain)| ListenerConfig {
        bind: Some(address.to_owned()),
        socket_domain: Some(domain),
        security: security.clone(),
        ..ListenerConfig::plain(DEFAULT_PORT)
    })
    .collect()
}

// ------------------------------------------------------------------------------------------
// Lines and values
// ------------------------------------------------------------------------------------------

/// One configuration line, split into its option name and the rest.
#[derive(Debug)]
struct Line<'a> {
    file: &'a Path,
    number: usize,
    option: &'a str,
    /// Everything after the option name, trimmed.
    rest: &'a str,
}

impl<'a> Line<'a> {
    fn parse(file: &'a Path, number: usize, text: &'a str) -> Line<'a> {
        let text = text.trim();
        let (option, rest) = match text.find(char::is_whitespace) {
            Some(at) => (&text[..at], text[at..].trim()),
            None => (text, ""),
        };
        Line {
            file,
            number,
            option,
            rest,
        }
    }

    fn location(&self) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line: self.number,
        }
    }

    fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, self.number, message)
    }

    fn warning(&self, message: impl Into<String>) -> ConfigWarning {
        ConfigWarning::at(&self.location(), message)
    }

    fn missing(&self) -> ConfigError {
        self.error(format!("{} needs a value", self.option))
    }

    /// The words of the value. A word starting with `#` starts a comment, as Mosquitto reads
    /// it after a listener's address.
    fn words(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.rest
            .split_whitespace()
            .take_while(|word| !word.starts_with('#'))
    }

    /// The first word, if any, for options whose meaning depends on their value.
    fn first_word(&self) -> Option<&'a str> {
        self.words().next()
    }

    /// A one-word value. Mosquitto reads one word and ignores the rest of the line; midge does
    /// too, but says so, since the rest was probably meant to mean something.
    fn value(&self, warnings: &mut Vec<ConfigWarning>) -> Result<&'a str, ConfigError> {
        let mut words = self.words();
        let value = words.next().ok_or_else(|| self.missing())?;
        if words.next().is_some() {
            warnings.push(self.warning(format!(
                "{} takes one value; the rest of the line is ignored",
                self.option
            )));
        }
        Ok(value)
    }

    /// A value that is the rest of the line, such as a path that may contain spaces.
    fn text(&self) -> Result<&'a str, ConfigError> {
        if self.rest.is_empty() {
            Err(self.missing())
        } else {
            Ok(self.rest)
        }
    }

    fn boolean(&self, warnings: &mut Vec<ConfigWarning>) -> Result<bool, ConfigError> {
        let value = self.value(warnings)?;
        parse_bool(value).ok_or_else(|| {
            self.error(format!(
                "{}: expected true or false, found \"{value}\"",
                self.option
            ))
        })
    }

    fn integer(&self, warnings: &mut Vec<ConfigWarning>) -> Result<i64, ConfigError> {
        let value = self.value(warnings)?;
        self.parse_integer(value)
    }

    fn parse_integer(&self, value: &str) -> Result<i64, ConfigError> {
        value.parse().map_err(|_| {
            self.error(format!(
                "{}: expected a whole number, found \"{value}\"",
                self.option
            ))
        })
    }

    /// An integer that must lie in `range`; Mosquitto refuses values outside it too.
    fn integer_in(
        &self,
        warnings: &mut Vec<ConfigWarning>,
        range: RangeInclusive<i64>,
    ) -> Result<i64, ConfigError> {
        let value = self.integer(warnings)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(self.error(format!(
                "{}: {value} is out of range ({} to {})",
                self.option,
                range.start(),
                range.end()
            )))
        }
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Mosquitto's convention for limits where any negative number means "no limit".
fn limit_or_unlimited(value: i64) -> Option<usize> {
    usize::try_from(value).ok()
}

/// Mosquitto's convention for counts where a negative number is read as 0 (no limit).
fn clamp_to_zero(value: i64) -> usize {
    usize::try_from(value).unwrap_or(0)
}

/// Whether a raw line carries nothing: blank, or a comment.
fn is_blank_or_comment(line: &[u8]) -> bool {
    match line.iter().find(|byte| !byte.is_ascii_whitespace()) {
        None => true,
        Some(byte) => *byte == b'#',
    }
}

/// A value together with the line that set it, for messages that point back at it.
#[derive(Debug, Clone)]
struct Located<T> {
    value: T,
    at: Location,
}

/// Sets an option that may be given only once per scope. Mosquitto refuses duplicates of these
/// too; the message points at both lines.
fn set_once<T>(
    slot: &mut Option<Located<T>>,
    line: &Line<'_>,
    value: T,
) -> Result<(), ConfigError> {
    if let Some(previous) = slot {
        return Err(line.error(format!("{} is already set at {}", line.option, previous.at)));
    }
    *slot = Some(Located {
        value,
        at: line.location(),
    });
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Listeners while they are being read
// ------------------------------------------------------------------------------------------

/// A listener as the lines so far describe it.
#[derive(Debug, Default)]
struct ListenerDraft {
    /// The `listener` line; for the default listener, the first line that configured it.
    defined_at: Option<Location>,
    port: Option<u16>,
    bind: Option<Located<String>>,
    unix_socket: Option<PathBuf>,
    protocol: ListenerProtocol,
    socket_domain: Option<SocketDomain>,
    max_connections: Option<usize>,
    max_qos: Option<QoS>,
    tls: TlsDraft,
    security: SecurityDraft,
}

#[derive(Debug, Default)]
struct TlsDraft {
    certfile: Option<Located<PathBuf>>,
    keyfile: Option<Located<PathBuf>>,
    cafile: Option<Located<PathBuf>>,
    capath: Option<Located<PathBuf>>,
    require_certificate: Option<Located<bool>>,
    use_identity_as_username: Option<Located<bool>>,
    tls_version: Option<Located<TlsVersion>>,
}

#[derive(Debug, Default)]
struct SecurityDraft {
    allow_anonymous: Option<bool>,
    password_file: Option<Located<PathBuf>>,
    acl_file: Option<Located<PathBuf>>,
    allow_zero_length_clientid: Option<Located<bool>>,
    auto_id_prefix: Option<Located<String>>,
}

impl ListenerDraft {
    /// Whether the default listener is configured, by Mosquitto's rule: it is started when any
    /// of its options differs from its default. `allow_anonymous`, `acl_file` and
    /// `auto_id_prefix` are not part of that rule in Mosquitto, so they are not here either.
    fn configures_default_listener(&self) -> bool {
        self.port.is_some()
            || self.bind.is_some()
            || self.protocol != ListenerProtocol::Mqtt
            || self.socket_domain.is_some()
            || self.max_connections.is_some()
            || self.max_qos.is_some_and(|qos| qos != QoS::ExactlyOnce)
            || self.tls.is_configured()
            || self.security.password_file.is_some()
            || is_set_to(&self.security.allow_zero_length_clientid, false)
    }

    fn build(self, per_listener_settings: bool) -> Result<ListenerConfig, ConfigError> {
        let tls = self.tls.build()?;
        let port = match self.unix_socket {
            Some(_) => 0,
            None => self.port.unwrap_or(DEFAULT_PORT),
        };
        Ok(ListenerConfig {
            port,
            bind: self.bind.map(|bind| bind.value),
            unix_socket: self.unix_socket,
            protocol: self.protocol,
            socket_domain: self.socket_domain,
            tls,
            security: if per_listener_settings {
                self.security.build()
            } else {
                SecurityConfig::default()
            },
            max_connections: self.max_connections,
            max_qos: self.max_qos.unwrap_or(QoS::ExactlyOnce),
            defined_at: self.defined_at,
        })
    }
}

fn is_set_to(slot: &Option<Located<bool>>, value: bool) -> bool {
    slot.as_ref().is_some_and(|set| set.value == value)
}

impl TlsDraft {
    fn is_configured(&self) -> bool {
        self.certfile.is_some()
            || self.keyfile.is_some()
            || self.cafile.is_some()
            || self.capath.is_some()
            || self.tls_version.is_some()
            || is_set_to(&self.require_certificate, true)
            || is_set_to(&self.use_identity_as_username, true)
    }

    /// The listener's TLS settings. A listener with some TLS options but not both `certfile`
    /// and `keyfile` would serve plain MQTT where the user meant TLS, so that is an error.
    fn build(self) -> Result<Option<TlsConfig>, ConfigError> {
        let (certfile, keyfile) = match (self.certfile, self.keyfile) {
            (Some(certfile), Some(keyfile)) => (certfile, keyfile),
            (Some(certfile), None) => {
                return Err(ConfigError::at(
                    &certfile.at,
                    "certfile is set but keyfile is not; a TLS listener needs both",
                ));
            }
            (None, Some(keyfile)) => {
                return Err(ConfigError::at(
                    &keyfile.at,
                    "keyfile is set but certfile is not; a TLS listener needs both",
                ));
            }
            (None, None) => {
                let stray = [
                    self.cafile.map(|set| ("cafile", set.at)),
                    self.capath.map(|set| ("capath", set.at)),
                    self.tls_version.map(|set| ("tls_version", set.at)),
                    self.require_certificate
                        .filter(|set| set.value)
                        .map(|set| ("require_certificate", set.at)),
                    self.use_identity_as_username
                        .filter(|set| set.value)
                        .map(|set| ("use_identity_as_username", set.at)),
                ];
                return match stray.into_iter().flatten().next() {
                    None => Ok(None),
                    Some((option, at)) => Err(ConfigError::at(
                        &at,
                        format!(
                            "{option} is set but certfile and keyfile are not; without them \
                             this listener would not use TLS"
                        ),
                    )),
                };
            }
        };
        let require_certificate = self
            .require_certificate
            .as_ref()
            .is_some_and(|set| set.value);
        if require_certificate && self.cafile.is_none() && self.capath.is_none() {
            let at = self
                .require_certificate
                .map(|set| set.at)
                .unwrap_or(certfile.at);
            return Err(ConfigError::at(
                &at,
                "require_certificate is true but neither cafile nor capath is set, so no client \
                 certificate could be verified",
            ));
        }
        Ok(Some(TlsConfig {
            certfile: certfile.value,
            keyfile: keyfile.value,
            cafile: self.cafile.map(|set| set.value),
            capath: self.capath.map(|set| set.value),
            require_certificate,
            use_identity_as_username: self.use_identity_as_username.is_some_and(|set| set.value),
            tls_version: self.tls_version.map(|set| set.value),
        }))
    }
}

impl SecurityDraft {
    fn build(&self) -> SecurityConfig {
        SecurityConfig {
            allow_anonymous: self.allow_anonymous,
            password_file: self.password_file.as_ref().map(|set| set.value.clone()),
            acl_file: self.acl_file.as_ref().map(|set| set.value.clone()),
        }
    }
}

/// Which listener the listener options of a line apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The default listener: no `listener` line yet in this file.
    Default,
    /// The explicit listener at this index.
    Listener(usize),
}

/// What is particular to the file being read.
#[derive(Debug)]
struct FileScope<'a> {
    file: &'a Path,
    /// 0 for the main file, 1 for files it includes.
    level: usize,
    /// Each file starts at the default listener, as in Mosquitto.
    target: Target,
    /// The bridge the bridge options configure: the last `connection` of this file, if any.
    bridge: Option<usize>,
}

// ------------------------------------------------------------------------------------------
// The parser
// ------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Parser {
    main_file: PathBuf,
    config: DaemonConfig,
    /// The global security options, with where they were set.
    security: SecurityDraft,
    default_listener: ListenerDraft,
    /// Options given to the default listener, for the warning when it is not started.
    default_listener_options: Vec<(String, Location)>,
    listeners: Vec<ListenerDraft>,
    /// A security option was seen, after which per_listener_settings may not be turned on.
    security_seen: bool,
    default_port_at: Option<Location>,
    log_types_set: bool,
    log_dest_set: bool,
    /// An unsupported log destination was asked for since the last `log_dest none`.
    log_dest_unsupported: bool,
    persistence_location: Option<Located<PathBuf>>,
    persistence_file: Option<Located<PathBuf>>,
    pid_file: Option<Located<PathBuf>>,
    bridges: Vec<bridge::BridgeDraft>,
    warnings: Vec<ConfigWarning>,
}

impl Parser {
    fn new(main_file: &Path) -> Parser {
        Parser {
            main_file: main_file.to_path_buf(),
            config: DaemonConfig::without_listeners(),
            security: SecurityDraft::default(),
            default_listener: ListenerDraft::default(),
            default_listener_options: Vec::new(),
            listeners: Vec::new(),
            security_seen: false,
            default_port_at: None,
            log_types_set: false,
            log_dest_set: false,
            log_dest_unsupported: false,
            persistence_location: None,
            persistence_file: None,
            pid_file: None,
            bridges: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn read_file(&mut self, path: &Path, level: usize) -> Result<(), ConfigError> {
        let bytes = fs::read(path).map_err(|error| {
            ConfigError::new(path, 0, format!("cannot read configuration file: {error}"))
        })?;
        self.parse_text(&bytes, path, level)
    }

    /// Applies the lines of one file. Lines are decoded one at a time so that a comment in
    /// another encoding, which Mosquitto skips unread, does not stop the broker.
    fn parse_text(&mut self, bytes: &[u8], file: &Path, level: usize) -> Result<(), ConfigError> {
        self.config.files.push(file.to_path_buf());
        // Editors on some systems start files with a byte order mark; it is not part of the
        // first option's name.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut scope = FileScope {
            file,
            level,
            target: Target::Default,
            bridge: None,
        };
        for (index, raw) in bytes.split(|byte| *byte == b'\n').enumerate() {
            let number = index + 1;
            if is_blank_or_comment(raw) {
                continue;
            }
            let text = std::str::from_utf8(raw)
                .map_err(|_| ConfigError::new(file, number, "the line is not valid UTF-8"))?;
            self.apply(&mut scope, &Line::parse(file, number, text))?;
        }
        Ok(())
    }

    fn apply(&mut self, scope: &mut FileScope<'_>, line: &Line<'_>) -> Result<(), ConfigError> {
        match line.option {
            "listener" => self.listener(scope, line),
            "port" => self.default_port(line),
            "bind_address" => self.default_bind_address(line),
            "protocol"
            | "socket_domain"
            | "max_connections"
            | "max_qos"
            | "maximum_qos"
            | "certfile"
            | "keyfile"
            | "cafile"
            | "capath"
            | "require_certificate"
            | "use_identity_as_username"
            | "tls_version" => self.listener_option(scope, line),
            "per_listener_settings" => self.per_listener_settings(line),
            "allow_anonymous"
            | "password_file"
            | "acl_file"
            | "allow_zero_length_clientid"
            | "auto_id_prefix" => self.security_option(scope, line),
            "include_dir" => self.include_dir(scope, line),
            "log_dest" => self.log_dest(line),
            "log_type" => self.log_type(line),
            "connection" => self.connection(scope, line),
            option if bridge::OPTIONS.contains(&option) => self.bridge_option(scope, line),
            _ => {
                if !self.broker_option(line)? && !self.daemon_option(line)? {
                    self.unsupported(line)?;
                }
                Ok(())
            }
        }
    }

    // --- Listeners -----------------------------------------------------------------------

    /// `listener PORT [ADDRESS]`, or `listener 0 PATH` for a Unix socket.
    fn listener(&mut self, scope: &mut FileScope<'_>, line: &Line<'_>) -> Result<(), ConfigError> {
        self.config.local_only = false;
        let mut words = line.words();
        let port = words.next().ok_or_else(|| line.missing())?;
        let port = line.parse_integer(port)?;
        let address = words.next();
        if words.next().is_some() {
            self.warnings.push(
                line.warning(
                    "listener takes a port and an address; the rest of the line is ignored",
                ),
            );
        }
        let mut draft = ListenerDraft {
            defined_at: Some(line.location()),
            ..ListenerDraft::default()
        };
        match (u16::try_from(port), address) {
            // An IP address after port 0 asks for a TCP listener on a port the system picks
            // (tests and tools that read the bound port from the log); any other word is the
            // path of a Unix socket, as in Mosquitto.
            (Ok(0), Some(path)) if path.parse::<std::net::IpAddr>().is_err() => {
                if cfg!(not(unix)) {
                    return Err(line.error(
                        "Unix socket listeners are available on Unix only; \
                         listen on a TCP port instead",
                    ));
                }
                draft.unix_socket = Some(PathBuf::from(path));
            }
            (Ok(0), None) => {
                return Err(line.error("listener 0 needs the path of a Unix socket"));
            }
            (Ok(port), address) => {
                draft.port = Some(port);
                draft.bind = address.map(|address| Located {
                    value: address.to_owned(),
                    at: line.location(),
                });
            }
            (Err(_), _) => {
                return Err(line.error(format!(
                    "invalid port {port}: ports are 1 to 65535 (0 with a Unix socket path or \
                     an IP address)"
                )));
            }
        }
        self.listeners.push(draft);
        scope.target = Target::Listener(self.listeners.len() - 1);
        Ok(())
    }

    /// Deprecated `port`: the default listener's port.
    fn default_port(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        self.config.local_only = false;
        let port = line.integer_in(&mut self.warnings, 1..=i64::from(u16::MAX))?;
        if let Some(previous) = &self.default_port_at {
            // Mosquitto warns and keeps the last one; so does midge.
            self.warnings.push(line.warning(format!(
                "port is also set at {previous}; this later value is used"
            )));
        }
        self.default_port_at = Some(line.location());
        self.touch_default_listener(line);
        self.default_listener.port = u16::try_from(port).ok();
        Ok(())
    }

    /// Deprecated `bind_address`: the default listener's address.
    fn default_bind_address(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        self.config.local_only = false;
        let address = line.text()?.to_owned();
        self.touch_default_listener(line);
        set_once(&mut self.default_listener.bind, line, address)
    }

    /// Notes that a line configured the default listener.
    fn touch_default_listener(&mut self, line: &Line<'_>) {
        self.default_listener
            .defined_at
            .get_or_insert_with(|| line.location());
        self.default_listener_options
            .push((line.option.to_owned(), line.location()));
    }

    fn target_listener(&mut self, target: Target) -> &mut ListenerDraft {
        match target {
            Target::Default => &mut self.default_listener,
            Target::Listener(index) => &mut self.listeners[index],
        }
    }

    /// An option of the listener being defined.
    fn listener_option(
        &mut self,
        scope: &FileScope<'_>,
        line: &Line<'_>,
    ) -> Result<(), ConfigError> {
        if scope.target == Target::Default {
            self.touch_default_listener(line);
        }
        let mut warnings = Vec::new();
        let listener = self.target_listener(scope.target);
        let result = apply_listener_option(listener, line, &mut warnings);
        self.warnings.append(&mut warnings);
        result
    }

    // --- Security --------------------------------------------------------------------------

    fn per_listener_settings(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        let value = line.boolean(&mut self.warnings)?;
        if self.config.per_listener_settings {
            // Mosquitto does not let it be turned off again once on; neither does midge.
            return Ok(());
        }
        if value && self.security_seen {
            return Err(line.error(
                "per_listener_settings must be set before any security option \
                 (allow_anonymous, password_file, acl_file, ...)",
            ));
        }
        self.config.per_listener_settings = value;
        Ok(())
    }

    /// A security option: of the listener being defined with per_listener_settings, global
    /// otherwise.
    fn security_option(
        &mut self,
        scope: &FileScope<'_>,
        line: &Line<'_>,
    ) -> Result<(), ConfigError> {
        self.security_seen = true;
        let security = if self.config.per_listener_settings {
            if scope.target == Target::Default {
                self.touch_default_listener(line);
            }
            &mut self.target_listener(scope.target).security
        } else {
            &mut self.security
        };
        let mut warnings = Vec::new();
        let result = apply_security_option(security, line, &mut warnings);
        self.warnings.append(&mut warnings);
        result
    }

    // --- Bridges ---------------------------------------------------------------------------

    /// `connection NAME`: a new bridge, which the bridge options after it in this file
    /// configure.
    fn connection(
        &mut self,
        scope: &mut FileScope<'_>,
        line: &Line<'_>,
    ) -> Result<(), ConfigError> {
        let draft = bridge::BridgeDraft::start(line, &mut self.warnings)?;
        if let Some(earlier) = self.bridges.iter().find(|b| b.name() == draft.name()) {
            return Err(line.error(format!(
                "bridge \"{}\" is already defined at {}; connection names must be unique",
                draft.name(),
                earlier.location()
            )));
        }
        self.bridges.push(draft);
        scope.bridge = Some(self.bridges.len() - 1);
        Ok(())
    }

    /// An option of the bridge being defined.
    fn bridge_option(&mut self, scope: &FileScope<'_>, line: &Line<'_>) -> Result<(), ConfigError> {
        let Some(index) = scope.bridge else {
            return Err(line.error(format!(
                "{} is a bridge option: it must follow a connection line in the same file (as \
                 in Mosquitto)",
                line.option
            )));
        };
        self.bridges[index].apply(line, &mut self.warnings)
    }

    /// The bridges, checked as a whole: each local client id names one bridge's session.
    fn finish_bridges(&mut self) -> Result<(), ConfigError> {
        let hostname = bridge::hostname();
        for draft in std::mem::take(&mut self.bridges) {
            let at = draft.location().clone();
            let (config, link) = draft.build(&hostname)?;
            if let Some(other) = self
                .config
                .broker
                .bridges
                .iter()
                .find(|other| other.local_clientid == config.local_clientid)
            {
                return Err(ConfigError::at(
                    &at,
                    format!(
                        "bridge \"{}\" has the local_clientid \"{}\" of bridge \"{}\"; set a \
                         different local_clientid (or remote_clientid) for one of them",
                        config.name, config.local_clientid, other.name
                    ),
                ));
            }
            self.config.broker.bridges.push(config);
            self.config.bridges.push(link);
        }
        Ok(())
    }

    // --- Files -----------------------------------------------------------------------------

    /// `include_dir DIR`: every `*.conf` file in DIR, in alphabetical order. Only the main file
    /// may include others, as in Mosquitto.
    fn include_dir(&mut self, scope: &FileScope<'_>, line: &Line<'_>) -> Result<(), ConfigError> {
        let dir = line.text()?;
        if scope.level > 0 {
            self.warnings.push(line.warning(
                "include_dir is only read from the main configuration file (as in Mosquitto); \
                 ignored",
            ));
            return Ok(());
        }
        let dir = resolve_against(scope.file, Path::new(dir));
        let files = conf_files_in(&dir).map_err(|error| {
            line.error(format!(
                "cannot read include_dir {}: {error}",
                dir.display()
            ))
        })?;
        for file in files {
            if is_same_file(&file, &self.main_file) {
                return Err(line.error(format!(
                    "include_dir {} contains the main configuration file",
                    dir.display()
                )));
            }
            self.read_file(&file, scope.level + 1)?;
        }
        Ok(())
    }

    // --- Logging ---------------------------------------------------------------------------

    /// `log_dest`: one destination a line; the first `log_dest` replaces the default.
    fn log_dest(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        let kind = line.first_word().ok_or_else(|| line.missing())?;
        if !self.log_dest_set {
            self.log_dest_set = true;
            self.config.log.dest.clear();
        }
        let dest = match kind {
            "none" => {
                self.config.log.dest.clear();
                self.log_dest_unsupported = false;
                return Ok(());
            }
            "stdout" => LogDest::Stdout,
            "stderr" => LogDest::Stderr,
            "file" => return self.log_dest_file(line),
            "syslog" | "topic" | "dlt" => {
                self.log_dest_unsupported = true;
                self.warnings.push(line.warning(format!(
                    "log_dest {kind} is not supported; those messages go to the other log \
                     destinations (stderr if there are none)"
                )));
                return Ok(());
            }
            other => {
                return Err(line.error(format!(
                    "invalid log_dest \"{other}\": expected stdout, stderr, file, syslog, topic \
                     or none"
                )));
            }
        };
        line.value(&mut self.warnings)?;
        if !self.config.log.dest.contains(&dest) {
            self.config.log.dest.push(dest);
        }
        Ok(())
    }

    /// `log_dest file PATH`; the path is the rest of the line. Only one file, as in Mosquitto.
    fn log_dest_file(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        let path = line.rest["file".len()..].trim();
        if path.is_empty() {
            return Err(line.error("log_dest file needs the path of the log file"));
        }
        if self
            .config
            .log
            .dest
            .iter()
            .any(|dest| matches!(dest, LogDest::File(_)))
        {
            return Err(line.error("log_dest file is given twice; only one log file is possible"));
        }
        self.config
            .log
            .dest
            .push(LogDest::File(PathBuf::from(path)));
        Ok(())
    }

    /// `log_type`: one type a line; the first `log_type` replaces the default set.
    fn log_type(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        let kind = line.value(&mut self.warnings)?;
        if !self.log_types_set {
            self.log_types_set = true;
            self.config.log.types = LogTypes::NONE;
        }
        let types = &mut self.config.log.types;
        match kind {
            "none" => *types = LogTypes::NONE,
            "all" => *types = LogTypes::ALL,
            "error" => types.error = true,
            "warning" => types.warning = true,
            "notice" => types.notice = true,
            "information" => types.information = true,
            "debug" => types.debug = true,
            "subscribe" => types.subscribe = true,
            "unsubscribe" => types.unsubscribe = true,
            "websockets" => types.websockets = true,
            "internal" | "quic" => self
                .warnings
                .push(line.warning(format!("log_type {kind} is not supported; ignored"))),
            other => {
                return Err(line.error(format!(
                    "invalid log_type \"{other}\": expected error, warning, notice, \
                     information, debug, subscribe, unsubscribe, websockets, all or none"
                )));
            }
        }
        Ok(())
    }

    // --- Global options --------------------------------------------------------------------

    /// Options that map onto the broker's [`Config`]. Returns whether `line` was one.
    fn broker_option(&mut self, line: &Line<'_>) -> Result<bool, ConfigError> {
        let warnings = &mut self.warnings;
        let broker = &mut self.config.broker;
        match line.option {
            "global_max_connections" => {
                broker.max_connections = limit_or_unlimited(line.integer(warnings)?);
            }
            "max_inflight_messages" => {
                let value = line.integer(warnings)?;
                // Negative and 65535 both mean "no limit" to Mosquitto, as 0 does.
                broker.max_inflight_messages = if value < 0 || value == i64::from(u16::MAX) {
                    0
                } else {
                    u16::try_from(value).map_err(|_| {
                        line.error(format!(
                            "max_inflight_messages: {value} is out of range (0 to 65535)"
                        ))
                    })?
                };
            }
            "max_keepalive" => {
                let value = line.integer_in(warnings, 0..=i64::from(u16::MAX))?;
                // 0 means no limit to Mosquitto, and 65535, its default, limits nothing a
                // client can ask for.
                broker.max_keepalive = match u16::try_from(value) {
                    Ok(0 | u16::MAX) | Err(_) => None,
                    Ok(limit) => Some(limit),
                };
            }
            "max_packet_size" => broker.max_packet_size = max_packet_size(line, warnings)?,
            "max_queued_bytes" => broker.max_queued_bytes = clamp_to_zero(line.integer(warnings)?),
            "max_queued_messages" => {
                broker.max_queued_messages = clamp_to_zero(line.integer(warnings)?);
            }
            // A listener option in Mosquitto; midge applies it to every listener.
            "max_topic_alias" => {
                let value = line.integer_in(warnings, 0..=i64::from(u16::MAX))?;
                broker.max_topic_alias = u16::try_from(value).unwrap_or(u16::MAX);
            }
            "max_topic_alias_broker" => {
                let value = line.integer_in(warnings, 0..=i64::from(u16::MAX))?;
                broker.max_topic_alias_broker = u16::try_from(value).unwrap_or(u16::MAX);
            }
            "queue_qos0_messages" => broker.queue_qos0_messages = line.boolean(warnings)?,
            "retain_available" => broker.retain_available = line.boolean(warnings)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Options of the daemon itself. Returns whether `line` was one.
    fn daemon_option(&mut self, line: &Line<'_>) -> Result<bool, ConfigError> {
        let warnings = &mut self.warnings;
        let config = &mut self.config;
        match line.option {
            "message_size_limit" => {
                let limit = line.integer_in(warnings, 0..=i64::from(MQTT_MAX_PAYLOAD))?;
                config.broker.message_size_limit = u32::try_from(limit).unwrap_or(MQTT_MAX_PAYLOAD);
            }
            "sys_interval" => {
                let seconds = line.integer_in(warnings, 0..=i64::from(u16::MAX))?;
                config.sys_interval = u64::try_from(seconds).unwrap_or(0);
            }
            "set_tcp_nodelay" => config.set_tcp_nodelay = line.boolean(warnings)?,
            "connection_messages" => config.log.connection_messages = line.boolean(warnings)?,
            "log_timestamp" => config.log.timestamp = line.boolean(warnings)?,
            "persistence" | "retained_persistence" => {
                config.persistence.enabled = line.boolean(warnings)?;
            }
            "autosave_interval" => {
                // Mosquitto reads a negative interval as 0.
                let seconds = line.integer(warnings)?;
                config.persistence.autosave_interval = u64::try_from(seconds).unwrap_or(0);
            }
            "persistence_sync" => config.persistence.sync = persistence_sync(line, warnings)?,
            "persistence_location" => {
                let location = PathBuf::from(line.text()?);
                set_once(&mut self.persistence_location, line, location.clone())?;
                config.persistence.location = location;
            }
            "persistence_file" => {
                let file = PathBuf::from(line.text()?);
                set_once(&mut self.persistence_file, line, file.clone())?;
                config.persistence.file = file;
            }
            "persistent_client_expiration" => {
                let seconds = client_expiration(line, warnings)?;
                config.persistent_client_expiration = Some(seconds);
                warnings.push(line.warning(
                    "persistent_client_expiration is not supported yet; disconnected persistent \
                     sessions are kept until their clients clean them or their MQTT 5 expiry \
                     passes",
                ));
            }
            "pid_file" => {
                let path = PathBuf::from(line.text()?);
                set_once(&mut self.pid_file, line, path.clone())?;
                config.pid_file = Some(path);
            }
            "user" => {
                config.user = Some(line.text()?.to_owned());
                warnings.push(line.warning(
                    "user is recorded but midge does not drop privileges yet; start it as the \
                     user it should run as",
                ));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// An option midge does not implement, or does not know.
    fn unsupported(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        if line.option == "check_retain_source" {
            // Mosquitto counts it as a security option for per_listener_settings' ordering.
            self.security_seen = true;
        }
        // An option neither Mosquitto nor midge knows is most likely a typo, and a mistyped
        // security option (password_flie) must not start a broker without it: an error, as in
        // Mosquitto.
        let Some(entry) = unsupported_option(line.option) else {
            return Err(line.error(format!("unknown option \"{}\"", line.option)));
        };
        if entry.is_inert(line.first_word()) {
            return Ok(());
        }
        match entry.class {
            Unsupported::Refuse => Err(line.error(format!(
                "{} is not supported: {}",
                line.option, entry.reason
            ))),
            Unsupported::Warn => {
                self.warnings.push(line.warning(format!(
                    "{} is not supported and is ignored: {}",
                    line.option, entry.reason
                )));
                Ok(())
            }
        }
    }

    // --- The end ---------------------------------------------------------------------------

    fn finish(mut self) -> Result<DaemonConfig, ConfigError> {
        let per_listener = self.config.per_listener_settings;
        let default_listener = std::mem::take(&mut self.default_listener);
        let listeners = if self.config.local_only {
            self.warn_ignored_default_options(per_listener);
            let security = if per_listener {
                self.apply_client_id_options(&[&default_listener.security])?;
                default_listener.security.build()
            } else {
                SecurityConfig::default()
            };
            local_only_listeners(&security)
        } else {
            let mut drafts = std::mem::take(&mut self.listeners);
            if default_listener.configures_default_listener() {
                // Mosquitto adds the default listener after the others.
                drafts.push(default_listener);
            } else {
                self.warn_ignored_default_options(per_listener);
            }
            if per_listener {
                let securities: Vec<&SecurityDraft> =
                    drafts.iter().map(|draft| &draft.security).collect();
                self.apply_client_id_options(&securities)?;
            }
            let listeners = drafts
                .into_iter()
                .map(|draft| draft.build(per_listener))
                .collect::<Result<Vec<_>, _>>()?;
            check_duplicate_listeners(&listeners)?;
            listeners
        };
        if !per_listener {
            let security = std::mem::take(&mut self.security);
            self.apply_client_id_options(&[&security])?;
            self.config.security = security.build();
        }
        self.config.listeners = listeners;
        // The broker publishes $SYS itself, so it needs the interval too.
        self.config.broker.sys_interval = self.config.sys_interval;
        self.config.broker.persistence = self.config.persistence.enabled;
        self.finish_bridges()?;
        self.finish_logging();
        self.config.warnings = self.sorted_warnings();
        Ok(self.config)
    }

    /// Options given to a default listener that is not started are ignored, as in Mosquitto;
    /// say so, since the user meant something by them. With per_listener_settings in
    /// local-only mode, the security options are not ignored: they apply to the local-only
    /// listeners.
    fn warn_ignored_default_options(&mut self, per_listener: bool) {
        let local_only = self.config.local_only;
        for (option, at) in std::mem::take(&mut self.default_listener_options) {
            let security = matches!(
                option.as_str(),
                "allow_anonymous"
                    | "password_file"
                    | "acl_file"
                    | "allow_zero_length_clientid"
                    | "auto_id_prefix"
            );
            if local_only && per_listener && security {
                continue;
            }
            let why = if local_only {
                "no listener, port or bind_address is configured, so midge listens on localhost \
                 only (as Mosquitto does)"
            } else {
                "it applies to the default listener, which nothing else configures and which is \
                 therefore not started (as in Mosquitto)"
            };
            self.warnings.push(ConfigWarning::at(
                &at,
                format!("{option} comes before any listener line and is ignored: {why}"),
            ));
        }
    }

    /// Sets the broker-wide `allow_zero_length_clientid` and `auto_id_prefix` from the security
    /// options that apply. midge applies them to every listener, so per-listener values must
    /// agree.
    fn apply_client_id_options(
        &mut self,
        securities: &[&SecurityDraft],
    ) -> Result<(), ConfigError> {
        let zero_length: Vec<(bool, Option<&Location>)> = securities
            .iter()
            .map(|security| match &security.allow_zero_length_clientid {
                Some(set) => (set.value, Some(&set.at)),
                None => (true, None),
            })
            .collect();
        if let Some(allow) = self.unanimous(&zero_length, "allow_zero_length_clientid")? {
            self.config.broker.allow_zero_length_clientid = allow;
        }
        let default_prefix = Config::default().auto_id_prefix;
        let prefixes: Vec<(String, Option<&Location>)> = securities
            .iter()
            .map(|security| match &security.auto_id_prefix {
                Some(set) => (set.value.clone(), Some(&set.at)),
                None => (default_prefix.clone(), None),
            })
            .collect();
        if let Some(prefix) = self.unanimous(&prefixes, "auto_id_prefix")? {
            self.config.broker.auto_id_prefix = prefix;
        }
        Ok(())
    }

    /// The one value every listener has, or an error at a line that sets a different one.
    fn unanimous<T: Clone + PartialEq>(
        &self,
        values: &[(T, Option<&Location>)],
        option: &str,
    ) -> Result<Option<T>, ConfigError> {
        let Some((first, first_at)) = values.first() else {
            return Ok(None);
        };
        let Some((_, differing_at)) = values.iter().find(|(value, _)| value != first) else {
            return Ok(Some(first.clone()));
        };
        let message = format!(
            "{option} differs between listeners; midge applies one value to every listener, so \
             give every listener the same value"
        );
        Err(match differing_at.or(*first_at) {
            Some(at) => ConfigError::at(at, message),
            None => ConfigError::new(&self.main_file, 0, message),
        })
    }

    /// The warnings in the order of the lines they are about: warnings found only at the end
    /// (about options ignored as a whole) belong among the others.
    fn sorted_warnings(&mut self) -> Vec<ConfigWarning> {
        let mut warnings = std::mem::take(&mut self.warnings);
        let files = &self.config.files;
        warnings.sort_by_key(|warning| {
            let file = files.iter().position(|file| *file == warning.file);
            (file, warning.line)
        });
        warnings
    }

    /// With every configured destination unsupported (`log_dest syslog` alone), log to stderr,
    /// which a service manager collects, rather than nowhere.
    fn finish_logging(&mut self) {
        if self.log_dest_unsupported && self.config.log.dest.is_empty() {
            self.config.log.dest.push(LogDest::Stderr);
        }
    }
}

/// Applies a listener option to `listener`.
fn apply_listener_option(
    listener: &mut ListenerDraft,
    line: &Line<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<(), ConfigError> {
    let tls = &mut listener.tls;
    match line.option {
        "protocol" => {
            listener.protocol = match line.value(warnings)? {
                "mqtt" => ListenerProtocol::Mqtt,
                "websockets" => ListenerProtocol::WebSockets,
                other => {
                    return Err(line.error(format!(
                        "unsupported protocol \"{other}\": expected mqtt or websockets"
                    )));
                }
            };
        }
        "socket_domain" => {
            listener.socket_domain = Some(match line.value(warnings)? {
                "ipv4" => SocketDomain::Ipv4,
                "ipv6" => SocketDomain::Ipv6,
                other => {
                    return Err(line.error(format!(
                        "invalid socket_domain \"{other}\": expected ipv4 or ipv6"
                    )));
                }
            });
        }
        "max_connections" => listener.max_connections = limit_or_unlimited(line.integer(warnings)?),
        "max_qos" | "maximum_qos" => {
            listener.max_qos = match line.integer_in(warnings, 0..=2)? {
                0 => Some(QoS::AtMostOnce),
                1 => Some(QoS::AtLeastOnce),
                _ => Some(QoS::ExactlyOnce),
            };
        }
        "certfile" => set_once(&mut tls.certfile, line, PathBuf::from(line.text()?))?,
        "keyfile" => set_once(&mut tls.keyfile, line, PathBuf::from(line.text()?))?,
        "cafile" => set_once(&mut tls.cafile, line, PathBuf::from(line.text()?))?,
        "capath" => set_once(&mut tls.capath, line, PathBuf::from(line.text()?))?,
        "require_certificate" => {
            tls.require_certificate = Some(Located {
                value: line.boolean(warnings)?,
                at: line.location(),
            });
        }
        "use_identity_as_username" => {
            tls.use_identity_as_username = Some(Located {
                value: line.boolean(warnings)?,
                at: line.location(),
            });
        }
        "tls_version" => {
            let version = tls_version(line, warnings)?;
            set_once(&mut tls.tls_version, line, version)?;
        }
        other => unreachable!("{other} is not a listener option"),
    }
    Ok(())
}

/// `tls_version`, the oldest version accepted. Versions older than 1.2 are read as 1.2, with a
/// warning: midge's TLS library implements nothing older, and a higher minimum weakens nothing.
fn tls_version(
    line: &Line<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<TlsVersion, ConfigError> {
    match line.value(warnings)? {
        "tlsv1.3" => Ok(TlsVersion::Tlsv1_3),
        "tlsv1.2" => Ok(TlsVersion::Tlsv1_2),
        old @ ("tlsv1.1" | "tlsv1") => {
            warnings.push(line.warning(format!(
                "tls_version {old} is not supported; TLS 1.2 is the oldest version midge \
                 accepts, so clients limited to older versions cannot connect"
            )));
            Ok(TlsVersion::Tlsv1_2)
        }
        other => Err(line.error(format!(
            "invalid tls_version \"{other}\": expected tlsv1.3 or tlsv1.2"
        ))),
    }
}

/// Applies a security option to `security`.
fn apply_security_option(
    security: &mut SecurityDraft,
    line: &Line<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<(), ConfigError> {
    match line.option {
        "allow_anonymous" => security.allow_anonymous = Some(line.boolean(warnings)?),
        "password_file" => set_once(
            &mut security.password_file,
            line,
            PathBuf::from(line.text()?),
        )?,
        "acl_file" => set_once(&mut security.acl_file, line, PathBuf::from(line.text()?))?,
        "allow_zero_length_clientid" => {
            security.allow_zero_length_clientid = Some(Located {
                value: line.boolean(warnings)?,
                at: line.location(),
            });
        }
        "auto_id_prefix" => set_once(&mut security.auto_id_prefix, line, line.text()?.to_owned())?,
        other => unreachable!("{other} is not a security option"),
    }
    Ok(())
}

/// `max_packet_size`: 0 means the protocol maximum; values above it are capped to it.
fn max_packet_size(line: &Line<'_>, warnings: &mut Vec<ConfigWarning>) -> Result<u32, ConfigError> {
    let value = line.integer(warnings)?;
    if value == 0 {
        return Ok(MAX_PACKET_SIZE);
    }
    if value < MIN_PACKET_SIZE {
        return Err(line.error(format!(
            "max_packet_size: {value} is too small; it must be at least {MIN_PACKET_SIZE} (or 0 \
             for no limit)"
        )));
    }
    Ok(u32::try_from(value).map_or(MAX_PACKET_SIZE, |size| size.min(MAX_PACKET_SIZE)))
}

/// Default interval of `persistence_sync periodic`.
const DEFAULT_SYNC_INTERVAL_MS: u64 = 1000;

/// `persistence_sync always` or `persistence_sync periodic [MS]`.
fn persistence_sync(
    line: &Line<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<SyncMode, ConfigError> {
    let mut words = line.words();
    let mode = words.next().ok_or_else(|| line.missing())?;
    let interval = words.next();
    let extra = match (mode, interval) {
        ("always", Some(_)) => true,
        ("periodic", Some(_)) => words.next().is_some(),
        _ => false,
    };
    if extra {
        warnings.push(line.warning("persistence_sync: the rest of the line is ignored"));
    }
    match mode {
        "always" => Ok(SyncMode::Always),
        "periodic" => {
            let ms = match interval {
                None => DEFAULT_SYNC_INTERVAL_MS,
                Some(text) => text
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| (1..=3_600_000).contains(ms))
                    .ok_or_else(|| {
                        line.error(format!(
                            "persistence_sync periodic: expected milliseconds from 1 to 3600000, \
                             found \"{text}\""
                        ))
                    })?,
            };
            Ok(SyncMode::Periodic(Duration::from_millis(ms)))
        }
        other => Err(line.error(format!(
            "invalid persistence_sync \"{other}\": expected always or periodic [MILLISECONDS]"
        ))),
    }
}

/// `persistent_client_expiration`: a number followed by h, d, w, m or y, in seconds.
fn client_expiration(
    line: &Line<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<u64, ConfigError> {
    let value = line.value(warnings)?;
    let invalid = || {
        line.error(format!(
            "invalid persistent_client_expiration \"{value}\": expected a number followed by h, \
             d, w, m or y, such as 2d"
        ))
    };
    let Some(unit) = value.chars().last() else {
        return Err(invalid());
    };
    let count = &value[..value.len() - unit.len_utf8()];
    let unit_seconds: u64 = match unit {
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return Err(invalid()),
    };
    match count.parse::<u64>() {
        Ok(count) if count > 0 => count.checked_mul(unit_seconds).ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

/// `path` as given if absolute, else relative to the directory of `file`.
fn resolve_against(file: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match file.parent() {
        Some(dir) => dir.join(path),
        None => path.to_path_buf(),
    }
}

/// The `*.conf` files of `dir`, sorted by name. A file named just `.conf` does not count, as
/// in Mosquitto.
fn conf_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.as_encoded_bytes();
        if name.len() > ".conf".len() && name.ends_with(b".conf") {
            files.push(entry.path());
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

fn is_same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Two listeners on the same socket cannot both be opened; say which line repeats one.
fn check_duplicate_listeners(listeners: &[ListenerConfig]) -> Result<(), ConfigError> {
    for (index, listener) in listeners.iter().enumerate() {
        // Port 0 with an address is a port the system picks: never the same twice.
        if listener.port == 0 && listener.unix_socket.is_none() {
            continue;
        }
        let earlier = listeners[..index].iter().find(|other| {
            other.unix_socket == listener.unix_socket
                && other.port == listener.port
                && other.bind.as_deref().map(str::to_ascii_lowercase)
                    == listener.bind.as_deref().map(str::to_ascii_lowercase)
        });
        if let (Some(earlier), Some(at)) = (earlier, &listener.defined_at) {
            let earlier_at = earlier
                .defined_at
                .as_ref()
                .map_or_else(String::new, |at| format!(" at {at}"));
            return Err(ConfigError::at(
                at,
                format!("{listener} is already defined{earlier_at}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "/etc/mosquitto/mosquitto.conf";

    fn parse(text: &str) -> DaemonConfig {
        match parse_str(text, Path::new(ORIGIN)) {
            Ok(config) => config,
            Err(error) => panic!("unexpected error: {error}"),
        }
    }

    fn parse_error(text: &str) -> ConfigError {
        match parse_str(text, Path::new(ORIGIN)) {
            Ok(config) => panic!("expected an error, got {config:#?}"),
            Err(error) => error,
        }
    }

    /// The warnings' messages, for assertions that do not care about locations.
    fn warning_messages(config: &DaemonConfig) -> Vec<&str> {
        config.warnings.iter().map(|w| w.message.as_str()).collect()
    }

    fn fixture(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/config")
            .join(path)
    }

    // --- Defaults ------------------------------------------------------------------------

    #[test]
    fn persistence_sync_is_a_midge_extension() {
        let config = parse("persistence true\n");
        assert_eq!(config.persistence.sync, SyncMode::Always);
        assert!(config.broker.persistence);
        assert_eq!(config.persistence.dir(), PathBuf::from("."));
        assert!(!parse("").broker.persistence);
        let periodic = |text: &str| parse(text).persistence.sync;
        assert_eq!(
            periodic("persistence_sync periodic\n"),
            SyncMode::Periodic(Duration::from_millis(1000))
        );
        assert_eq!(
            periodic("persistence_sync periodic 250 # comment\n"),
            SyncMode::Periodic(Duration::from_millis(250))
        );
        assert_eq!(periodic("persistence_sync always\n"), SyncMode::Always);
        let config = parse("persistence_sync always 10\n");
        assert_eq!(warning_messages(&config).len(), 1);
        for bad in ["sometimes", "periodic 0", "periodic x", "periodic -5", ""] {
            let e = parse_error(&format!("persistence_sync {bad}\n"));
            assert!(e.to_string().contains("persistence_sync"), "{bad}: {e}");
        }
        let config = parse("persistence_location /var/lib/midge\n");
        assert_eq!(config.persistence.dir(), PathBuf::from("/var/lib/midge"));
    }

    #[test]
    fn default_local_only_listens_on_loopback_and_allows_anonymous() {
        let config = DaemonConfig::default_local_only();
        assert!(config.local_only);
        assert_eq!(config.listeners.len(), 2);
        let binds: Vec<_> = config.listeners.iter().map(|l| l.bind.as_deref()).collect();
        assert_eq!(binds, [Some("127.0.0.1"), Some("::1")]);
        for listener in &config.listeners {
            assert_eq!(listener.port, 1883);
            assert_eq!(listener.protocol, ListenerProtocol::Mqtt);
            assert!(listener.tls.is_none());
            assert!(config.allow_anonymous(listener));
        }
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn empty_file_means_the_same_as_no_file() {
        let config = parse("# nothing but a comment\n\n   \n");
        let default = DaemonConfig::default_local_only();
        assert_eq!(config.listeners, default.listeners);
        assert!(config.local_only);
        assert_eq!(config.files, [PathBuf::from(ORIGIN)]);
    }

    #[test]
    fn defaults_follow_mosquitto() {
        let config = DaemonConfig::default_local_only();
        let broker = Config::default();
        assert_eq!(
            config.broker.max_inflight_messages,
            broker.max_inflight_messages
        );
        assert_eq!(config.broker.max_queued_messages, 1000);
        assert_eq!(config.broker.max_packet_size, MAX_PACKET_SIZE);
        assert_eq!(config.broker.max_keepalive, None);
        assert_eq!(config.broker.auto_id_prefix, "auto-");
        assert!(config.broker.allow_zero_length_clientid);
        assert_eq!(config.sys_interval, 10);
        assert_eq!(config.broker.sys_interval, 10);
        assert_eq!(config.broker.message_size_limit, 0);
        assert!(!config.persistence.enabled);
        assert_eq!(config.persistence.autosave_interval, 1800);
        assert_eq!(config.persistence.path(), PathBuf::from("mosquitto.db"));
        assert_eq!(config.log.types, LogTypes::default());
        assert_eq!(config.log.dest, [LogDest::Stderr]);
        assert!(config.log.connection_messages);
        assert!(config.log.timestamp);
        assert!(!config.per_listener_settings);
    }

    #[test]
    fn explicit_listener_refuses_anonymous_unless_allowed() {
        let config = parse("listener 1883\n");
        assert!(!config.local_only);
        assert!(!config.allow_anonymous(&config.listeners[0]));

        let config = parse("listener 1883\nallow_anonymous true\n");
        assert!(config.allow_anonymous(&config.listeners[0]));

        // The deprecated port option configures a listener too.
        let config = parse("port 1883\n");
        assert!(!config.allow_anonymous(&config.listeners[0]));
    }

    #[test]
    fn explicit_allow_anonymous_false_is_honoured_in_local_only_mode() {
        let config = parse("allow_anonymous false\npassword_file /etc/mosquitto/passwd\n");
        assert!(config.local_only);
        assert!(!config.allow_anonymous(&config.listeners[0]));
        assert_eq!(
            config.security.password_file,
            Some(PathBuf::from("/etc/mosquitto/passwd"))
        );
    }

    // --- File format ---------------------------------------------------------------------

    #[test]
    fn comments_blank_lines_and_whitespace() {
        let config = parse(
            "\u{feff}# comment\r\n\
             \r\n\
             \t  # indented comment\n\
             listener\t1883   0.0.0.0   # trailing comment\r\n\
             max_connections 10 # a limit\n\
             \x20  allow_anonymous   true  \n",
        );
        let listener = &config.listeners[0];
        assert_eq!(listener.port, 1883);
        assert_eq!(listener.bind.as_deref(), Some("0.0.0.0"));
        assert_eq!(listener.max_connections, Some(10));
        assert_eq!(config.security.allow_anonymous, Some(true));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn paths_take_the_rest_of_the_line() {
        let config = parse(
            "listener 1883\npassword_file /etc/my broker/passwd\npid_file  /run/my midge.pid \n",
        );
        assert_eq!(
            config.security.password_file,
            Some(PathBuf::from("/etc/my broker/passwd"))
        );
        assert_eq!(config.pid_file, Some(PathBuf::from("/run/my midge.pid")));
    }

    #[test]
    fn comment_lines_need_not_be_utf8() {
        let mut bytes = b"# Passw\xF6rter\nlistener 1883\n".to_vec();
        let mut parser = Parser::new(Path::new(ORIGIN));
        parser.parse_text(&bytes, Path::new(ORIGIN), 0).unwrap();
        assert_eq!(parser.finish().unwrap().listeners[0].port, 1883);

        bytes.extend_from_slice(b"password_file /etc/passw\xF6rter\n");
        let mut parser = Parser::new(Path::new(ORIGIN));
        let error = parser.parse_text(&bytes, Path::new(ORIGIN), 0).unwrap_err();
        assert_eq!(error.line, 3);
    }

    #[test]
    fn booleans_accept_true_false_1_and_0() {
        for (text, expected) in [("true", true), ("1", true), ("false", false), ("0", false)] {
            let config = parse(&format!("retain_available {text}\n"));
            assert_eq!(config.broker.retain_available, expected, "{text}");
        }
        let error = parse_error("retain_available yes\n");
        assert_eq!(error.line, 1);
        assert!(error.message.contains("expected true or false"), "{error}");
    }

    #[test]
    fn extra_words_are_ignored_with_a_warning() {
        let config = parse("queue_qos0_messages true false\n");
        assert!(config.broker.queue_qos0_messages);
        assert_eq!(config.warnings.len(), 1);
        assert_eq!(config.warnings[0].line, 1);
        assert!(config.warnings[0].message.contains("takes one value"));
    }

    // --- Every supported global option ---------------------------------------------------

    #[test]
    fn every_global_option_is_parsed() {
        let config = parse(
            "global_max_connections 5000
max_inflight_messages 40
max_keepalive 120
max_topic_alias 20
max_topic_alias_broker 0
max_packet_size 65536
max_queued_bytes 1048576
max_queued_messages 200
queue_qos0_messages true
retain_available false
allow_zero_length_clientid false
auto_id_prefix midge-
message_size_limit 10000
sys_interval 0
set_tcp_nodelay true
connection_messages false
log_timestamp false
persistence true
persistence_location /var/lib/mosquitto/
persistence_file broker.db
autosave_interval 60
pid_file /run/mosquitto.pid
allow_anonymous true
password_file /etc/mosquitto/passwd
acl_file /etc/mosquitto/acl
listener 1883
",
        );
        let broker = &config.broker;
        assert_eq!(broker.max_connections, Some(5000));
        assert_eq!(broker.max_inflight_messages, 40);
        assert_eq!(broker.max_keepalive, Some(120));
        assert_eq!(broker.max_topic_alias, 20);
        assert_eq!(broker.max_topic_alias_broker, 0);
        assert_eq!(broker.max_packet_size, 65536);
        assert_eq!(broker.max_queued_bytes, 1_048_576);
        assert_eq!(broker.max_queued_messages, 200);
        assert!(broker.queue_qos0_messages);
        assert!(!broker.retain_available);
        assert!(!broker.allow_zero_length_clientid);
        assert_eq!(broker.auto_id_prefix, "midge-");
        assert_eq!(config.broker.message_size_limit, 10_000);
        assert_eq!(config.sys_interval, 0);
        assert!(config.set_tcp_nodelay);
        assert!(!config.log.connection_messages);
        assert!(!config.log.timestamp);
        assert!(config.persistence.enabled);
        assert_eq!(
            config.persistence.path(),
            PathBuf::from("/var/lib/mosquitto/broker.db")
        );
        assert_eq!(config.persistence.autosave_interval, 60);
        assert!(config.broker.persistence, "the broker records its state");
        assert_eq!(config.persistence.sync, SyncMode::Always);
        assert_eq!(config.pid_file, Some(PathBuf::from("/run/mosquitto.pid")));
        assert_eq!(
            config.security,
            SecurityConfig {
                allow_anonymous: Some(true),
                password_file: Some(PathBuf::from("/etc/mosquitto/passwd")),
                acl_file: Some(PathBuf::from("/etc/mosquitto/acl")),
            }
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn recorded_but_unimplemented_options_warn() {
        let config = parse("user mosquitto\npersistent_client_expiration 2d\n");
        assert_eq!(config.user.as_deref(), Some("mosquitto"));
        assert_eq!(config.persistent_client_expiration, Some(2 * 86_400));
        let lines: Vec<_> = config.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [1, 2]);
        assert!(
            config.warnings[0]
                .message
                .contains("does not drop privileges")
        );

        for (text, seconds) in [("1h", 3600), ("3w", 3 * 7 * 86_400), ("1m", 30 * 86_400)] {
            let config = parse(&format!("persistent_client_expiration {text}\n"));
            assert_eq!(config.persistent_client_expiration, Some(seconds));
        }
        for bad in ["2", "0d", "xd", "2é", "-1d"] {
            let error = parse_error(&format!("persistent_client_expiration {bad}\n"));
            assert!(
                error
                    .message
                    .contains("invalid persistent_client_expiration")
            );
        }
    }

    #[test]
    fn special_values_mean_what_they_mean_to_mosquitto() {
        let config = parse(
            "global_max_connections -1\nmax_inflight_messages 0\nmax_queued_messages 0\n\
             max_queued_bytes -5\nmax_keepalive 65535\nmax_packet_size 0\nautosave_interval -1\n",
        );
        assert_eq!(config.broker.max_connections, None);
        assert_eq!(config.broker.max_inflight_messages, 0);
        assert_eq!(config.broker.max_queued_messages, 0);
        assert_eq!(config.broker.max_queued_bytes, 0);
        assert_eq!(config.broker.max_keepalive, None);
        assert_eq!(config.broker.max_packet_size, MAX_PACKET_SIZE);
        assert_eq!(config.persistence.autosave_interval, 0);

        assert_eq!(
            parse("max_inflight_messages 65535\n")
                .broker
                .max_inflight_messages,
            0
        );
        assert_eq!(
            parse("max_inflight_messages -3\n")
                .broker
                .max_inflight_messages,
            0
        );
        assert_eq!(parse("max_keepalive 0\n").broker.max_keepalive, None);
        assert_eq!(
            parse("max_packet_size 4000000000\n").broker.max_packet_size,
            MAX_PACKET_SIZE
        );
        assert_eq!(
            parse("message_size_limit 268435455\n")
                .broker
                .message_size_limit,
            MQTT_MAX_PAYLOAD
        );
        let config = parse("listener 1883\nmax_connections -1\nlistener 1884\nmax_connections 0\n");
        assert_eq!(config.listeners[0].max_connections, None);
        assert_eq!(config.listeners[1].max_connections, Some(0));
    }

    #[test]
    fn out_of_range_numbers_are_errors() {
        for text in [
            "max_inflight_messages 65536",
            "max_keepalive 65536",
            "max_keepalive -1",
            "max_packet_size 19",
            "max_packet_size -1",
            "message_size_limit 268435456",
            "message_size_limit -1",
            "sys_interval 65536",
            "sys_interval -1",
            "port 0",
            "port 65536",
            "listener 65536",
            "listener -1",
        ] {
            let error = parse_error(&format!("# first\n{text}\n"));
            assert_eq!(error.line, 2, "{text}: {error}");
        }
    }

    #[test]
    fn non_numbers_are_errors() {
        for text in [
            "port abc",
            "listener 18x3",
            "max_connections lots",
            "max_queued_messages 1e3",
            "autosave_interval 1800s",
        ] {
            let error = parse_error(&format!("listener 1883\n{text}\n"));
            assert_eq!(error.line, 2, "{text}");
            assert!(error.message.contains("expected a whole number"), "{error}");
        }
    }

    #[test]
    fn missing_values_are_errors() {
        for option in [
            "listener",
            "port",
            "bind_address",
            "protocol",
            "max_connections",
            "certfile",
            "allow_anonymous",
            "password_file",
            "max_queued_messages",
            "persistence_location",
            "log_dest",
            "log_type",
            "include_dir",
            "user",
            "pid_file",
        ] {
            let error = parse_error(&format!("listener 1883\n{option}\n"));
            assert_eq!(error.line, 2, "{option}");
            assert_eq!(error.message, format!("{option} needs a value"));
        }
        assert_eq!(parse_error("listener 0\n").line, 1);
    }

    #[test]
    fn string_options_may_be_set_once() {
        let error = parse_error("listener 1883\npassword_file /a\n\npassword_file /b\n");
        assert_eq!(error.line, 4);
        assert!(error.message.contains(&format!("{ORIGIN}:2")), "{error}");
        for option in [
            "persistence_location",
            "persistence_file",
            "pid_file",
            "acl_file",
        ] {
            let error = parse_error(&format!("{option} a\n{option} b\n"));
            assert_eq!(error.line, 2, "{option}");
        }
        // Once per listener, not once per file.
        let config = parse(
            "listener 8883\ncertfile /a\nkeyfile /k\nlistener 8884\ncertfile /b\nkeyfile /k\n",
        );
        assert_eq!(config.listeners.len(), 2);
    }

    // --- Logging -------------------------------------------------------------------------

    #[test]
    fn log_type_replaces_the_default_set() {
        let config = parse("log_type error\nlog_type subscribe\n");
        assert_eq!(
            config.log.types,
            LogTypes {
                error: true,
                subscribe: true,
                ..LogTypes::NONE
            }
        );
        assert_eq!(parse("log_type all\n").log.types, LogTypes::ALL);
        assert_eq!(
            parse("log_type all\nlog_type none\n").log.types,
            LogTypes::NONE
        );
        let config = parse(
            "log_type warning\nlog_type notice\nlog_type information\nlog_type debug\n\
             log_type subscribe\nlog_type unsubscribe\nlog_type websockets\n",
        );
        assert_eq!(
            config.log.types,
            LogTypes {
                error: false,
                ..LogTypes::ALL
            }
        );
        assert_eq!(parse_error("log_type verbose\n").line, 1);
    }

    #[test]
    fn log_dest_replaces_the_default_destination() {
        let config = parse("log_dest stdout\nlog_dest file /var/log/mosquitto/my log.log\n");
        assert_eq!(
            config.log.dest,
            [
                LogDest::Stdout,
                LogDest::File(PathBuf::from("/var/log/mosquitto/my log.log"))
            ]
        );
        assert!(parse("log_dest none\n").log.dest.is_empty());
        assert_eq!(
            parse("log_dest stderr\nlog_dest none\nlog_dest stdout\n")
                .log
                .dest,
            [LogDest::Stdout]
        );
        let error = parse_error("log_dest file /a.log\nlog_dest file /b.log\n");
        assert_eq!(error.line, 2);
        assert_eq!(parse_error("log_dest file\n").line, 1);
        assert_eq!(parse_error("log_dest printer\n").line, 1);
    }

    #[test]
    fn unsupported_log_destinations_warn_and_fall_back_to_stderr() {
        let config = parse("log_dest syslog\n");
        assert_eq!(config.log.dest, [LogDest::Stderr]);
        assert_eq!(config.warnings.len(), 1);
        assert!(config.warnings[0].message.contains("log_dest syslog"));

        let config = parse("log_dest syslog\nlog_dest file /var/log/midge.log\n");
        assert_eq!(
            config.log.dest,
            [LogDest::File(PathBuf::from("/var/log/midge.log"))]
        );
        let config = parse("log_dest topic\nlog_dest none\n");
        assert!(config.log.dest.is_empty());
    }

    // --- Listeners -----------------------------------------------------------------------

    #[test]
    fn listener_options_apply_to_the_listener_above_them() {
        let config = parse(
            "listener 1883 127.0.0.1
max_connections 10
socket_domain ipv4

listener 9001
protocol websockets
socket_domain ipv6
max_connections 20

listener 8883 ::
certfile /etc/certs/server.crt
keyfile /etc/certs/server.key
",
        );
        assert!(!config.local_only);
        let [plain, ws, tls] = config.listeners.as_slice() else {
            panic!("expected three listeners: {:?}", config.listeners);
        };
        assert_eq!(
            (plain.port, plain.bind.as_deref()),
            (1883, Some("127.0.0.1"))
        );
        assert_eq!(plain.max_connections, Some(10));
        assert_eq!(plain.socket_domain, Some(SocketDomain::Ipv4));
        assert_eq!(plain.protocol, ListenerProtocol::Mqtt);
        assert!(plain.tls.is_none());
        assert_eq!(
            plain.defined_at,
            Some(Location {
                file: PathBuf::from(ORIGIN),
                line: 1
            })
        );

        assert_eq!((ws.port, ws.bind.as_deref()), (9001, None));
        assert_eq!(ws.protocol, ListenerProtocol::WebSockets);
        assert_eq!(ws.socket_domain, Some(SocketDomain::Ipv6));
        assert_eq!(ws.max_connections, Some(20));
        assert!(ws.tls.is_none());

        assert_eq!((tls.port, tls.bind.as_deref()), (8883, Some("::")));
        assert_eq!(tls.protocol, ListenerProtocol::Mqtt);
        assert_eq!(tls.max_connections, None);
        let tls_config = tls.tls.as_ref().unwrap();
        assert_eq!(tls_config.certfile, PathBuf::from("/etc/certs/server.crt"));
        assert_eq!(tls_config.keyfile, PathBuf::from("/etc/certs/server.key"));
        assert_eq!(tls.to_string(), "port 8883 on :: (mqtt, TLS)");
        assert_eq!(ws.to_string(), "port 9001 on all interfaces (websockets)");
    }

    #[cfg(unix)]
    #[test]
    fn unix_socket_listener() {
        let config = parse("listener 0 /run/mosquitto/mqtt.sock\nallow_anonymous true\n");
        let listener = &config.listeners[0];
        assert_eq!(listener.port, 0);
        assert_eq!(
            listener.unix_socket,
            Some(PathBuf::from("/run/mosquitto/mqtt.sock"))
        );
        assert_eq!(listener.bind, None);
        assert_eq!(
            listener.to_string(),
            "unix socket /run/mosquitto/mqtt.sock (mqtt)"
        );
        let error = parse_error("listener 0 # no path\n");
        assert!(error.message.contains("Unix socket"), "{error}");
    }

    #[test]
    fn port_zero_with_an_ip_address_is_an_ephemeral_tcp_port() {
        let config = parse("listener 0 127.0.0.1\nlistener 0 127.0.0.1\nlistener 0 ::1\n");
        assert_eq!(config.listeners.len(), 3);
        for listener in &config.listeners {
            assert_eq!(listener.port, 0);
            assert_eq!(listener.unix_socket, None);
        }
        assert_eq!(config.listeners[0].bind.as_deref(), Some("127.0.0.1"));
        assert_eq!(config.listeners[2].bind.as_deref(), Some("::1"));
        // A host name is still a socket path, as in Mosquitto.
        #[cfg(unix)]
        assert_eq!(
            parse("listener 0 localhost\n").listeners[0].unix_socket,
            Some(PathBuf::from("localhost"))
        );
    }

    /// Elsewhere a Unix socket listener is an error at its line, not a listener that never
    /// listens.
    #[cfg(not(unix))]
    #[test]
    fn unix_socket_listener_is_refused_off_unix() {
        for text in [
            "allow_anonymous true\nlistener 0 C:\\midge\\mqtt.sock\n",
            "allow_anonymous true\nlistener 0 localhost\n",
        ] {
            let error = parse_error(text);
            assert_eq!(error.line, 2, "{error}");
            assert!(error.message.contains("Unix only"), "{error}");
        }
    }

    #[test]
    fn deprecated_port_and_bind_address_configure_the_default_listener() {
        let config = parse("port 1884\nbind_address 10.0.0.1\nmax_connections 5\n");
        let [listener] = config.listeners.as_slice() else {
            panic!("{:?}", config.listeners);
        };
        assert_eq!(listener.port, 1884);
        assert_eq!(listener.bind.as_deref(), Some("10.0.0.1"));
        assert_eq!(listener.max_connections, Some(5));
        assert_eq!(listener.defined_at.as_ref().map(|at| at.line), Some(1));

        let config = parse("bind_address localhost\n");
        assert_eq!(config.listeners[0].port, 1883);
        assert_eq!(config.listeners[0].bind.as_deref(), Some("localhost"));

        let config = parse("port 1884\nport 1885\n");
        assert_eq!(config.listeners[0].port, 1885);
        assert_eq!(config.warnings.len(), 1);
        assert_eq!(config.warnings[0].line, 2);
    }

    #[test]
    fn options_before_the_first_listener_configure_the_default_listener() {
        let config = parse("certfile /c.crt\nkeyfile /c.key\nlistener 9001\nprotocol websockets\n");
        let [explicit, default] = config.listeners.as_slice() else {
            panic!("{:?}", config.listeners);
        };
        assert_eq!(explicit.port, 9001);
        assert_eq!(explicit.protocol, ListenerProtocol::WebSockets);
        assert!(explicit.tls.is_none());
        // The default listener comes last, on port 1883 of every interface, with TLS.
        assert_eq!((default.port, default.bind.as_deref()), (1883, None));
        assert!(default.tls.is_some());
        assert_eq!(default.defined_at.as_ref().map(|at| at.line), Some(1));
    }

    #[test]
    fn listener_options_without_any_listener_are_ignored_with_a_warning() {
        let config = parse("certfile /c.crt\nkeyfile /c.key\nmax_connections 3\n");
        assert!(config.local_only);
        assert_eq!(
            config.listeners,
            DaemonConfig::default_local_only().listeners
        );
        let lines: Vec<_> = config.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [1, 2, 3]);
        assert!(config.warnings[0].message.contains("localhost only"));
    }

    #[test]
    fn duplicate_listeners_are_errors() {
        let error = parse_error("listener 1883\nlistener 8883\n\nlistener 1883\n");
        assert_eq!(error.line, 4);
        assert!(error.message.contains("already defined at"), "{error}");
        assert_eq!(
            parse_error("listener 0 /a.sock\nlistener 0 /a.sock\n").line,
            2
        );
        // The default listener clashes with an explicit one on the same port.
        let error = parse_error("listener 1883\nport 1883\n");
        assert_eq!(error.line, 2);
        // Same port, different addresses: fine.
        let config = parse("listener 1883 127.0.0.1\nlistener 1883 ::1\n");
        assert_eq!(config.listeners.len(), 2);
    }

    #[test]
    fn invalid_listener_keywords_are_errors() {
        assert_eq!(parse_error("listener 1883\nprotocol mqttsn\n").line, 2);
        assert_eq!(parse_error("listener 1883\nprotocol quic\n").line, 2);
        assert_eq!(parse_error("listener 1883\nsocket_domain ipv5\n").line, 2);
    }

    #[test]
    fn max_qos_limits_the_listener_it_follows() {
        let config = parse(
            "listener 1883\nmax_qos 1\nlistener 1884\nmaximum_qos 0\nlistener 1885\n\
             listener 1886\nmax_qos 2\n",
        );
        let limits: Vec<QoS> = config.listeners.iter().map(|l| l.max_qos).collect();
        assert_eq!(
            limits,
            [
                QoS::AtLeastOnce,
                QoS::AtMostOnce,
                QoS::ExactlyOnce,
                QoS::ExactlyOnce
            ]
        );
        assert!(
            config.warnings.is_empty(),
            "{:?}",
            warning_messages(&config)
        );
    }

    #[test]
    fn max_qos_outside_0_to_2_is_an_error() {
        for value in ["3", "-1", "one"] {
            let error = parse_error(&format!("listener 1883\nmax_qos {value}\n"));
            assert_eq!(error.line, 2, "{value}: {error}");
            assert!(error.message.contains("max_qos"), "{value}: {error}");
        }
    }

    #[test]
    fn max_qos_before_any_listener_configures_the_default_listener() {
        // As in Mosquitto, a value other than 2 makes the default listener start.
        let config = parse("max_qos 0\nlistener 8883\n");
        let [explicit, default] = config.listeners.as_slice() else {
            panic!("expected two listeners: {:?}", config.listeners);
        };
        assert_eq!((explicit.port, explicit.max_qos), (8883, QoS::ExactlyOnce));
        assert_eq!(
            (default.port, default.max_qos),
            (DEFAULT_PORT, QoS::AtMostOnce)
        );
        // 2 is the default and does not.
        let config = parse("max_qos 2\nlistener 8883\n");
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.warnings.len(), 1);
        // Without any listener, midge listens on localhost only with every listener option at
        // its default, and says the option is ignored.
        let config = parse("max_qos 1\n");
        assert!(config.local_only);
        assert!(
            config
                .listeners
                .iter()
                .all(|l| l.max_qos == QoS::ExactlyOnce)
        );
        assert_eq!(config.warnings.len(), 1);
        assert!(config.warnings[0].message.contains("localhost only"));
    }

    // --- TLS -----------------------------------------------------------------------------

    #[test]
    fn tls_listener_with_client_certificates() {
        let config = parse(
            "listener 8883
certfile /etc/mosquitto/certs/server.crt
keyfile /etc/mosquitto/certs/server.key
cafile /etc/mosquitto/ca_certificates/ca.crt
capath /etc/ssl/certs
require_certificate true
use_identity_as_username true
tls_version tlsv1.3
",
        );
        let tls = config.listeners[0].tls.clone().unwrap();
        assert_eq!(
            tls,
            TlsConfig {
                certfile: PathBuf::from("/etc/mosquitto/certs/server.crt"),
                keyfile: PathBuf::from("/etc/mosquitto/certs/server.key"),
                cafile: Some(PathBuf::from("/etc/mosquitto/ca_certificates/ca.crt")),
                capath: Some(PathBuf::from("/etc/ssl/certs")),
                require_certificate: true,
                use_identity_as_username: true,
                tls_version: Some(TlsVersion::Tlsv1_3),
            }
        );
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn tls_versions() {
        let base = "listener 8883\ncertfile /c\nkeyfile /k\n";
        let version = |text: &str| parse(&format!("{base}{text}\n")).listeners[0].tls.clone();
        assert_eq!(
            version("tls_version tlsv1.2").unwrap().tls_version,
            Some(TlsVersion::Tlsv1_2)
        );
        let config = parse(&format!("{base}tls_version tlsv1.1\n"));
        assert_eq!(
            config.listeners[0].tls.as_ref().unwrap().tls_version,
            Some(TlsVersion::Tlsv1_2)
        );
        assert_eq!(config.warnings[0].line, 4);
        assert_eq!(parse_error(&format!("{base}tls_version sslv3\n")).line, 4);
    }

    #[test]
    fn certfile_without_keyfile_is_an_error() {
        let error = parse_error("listener 8883\ncertfile /c.crt\n");
        assert_eq!(error.line, 2);
        assert!(error.message.contains("keyfile is not"), "{error}");
        let error = parse_error("listener 8883\n\nkeyfile /c.key\n");
        assert_eq!(error.line, 3);
        assert!(error.message.contains("certfile is not"), "{error}");
    }

    #[test]
    fn tls_options_without_a_certificate_are_errors() {
        for option in [
            "cafile /ca.crt",
            "capath /etc/ssl/certs",
            "require_certificate true",
            "use_identity_as_username true",
            "tls_version tlsv1.2",
        ] {
            let error = parse_error(&format!("listener 1883\n{option}\n"));
            assert_eq!(error.line, 2, "{option}");
            assert!(error.message.contains("would not use TLS"), "{error}");
        }
        // Switching a TLS feature off on a plain listener is fine.
        let config =
            parse("listener 1883\nrequire_certificate false\nuse_identity_as_username false\n");
        assert!(config.listeners[0].tls.is_none());
    }

    #[test]
    fn require_certificate_needs_a_ca() {
        let error = parse_error(
            "listener 8883\ncertfile /c.crt\nkeyfile /c.key\nrequire_certificate true\n",
        );
        assert_eq!(error.line, 4);
        assert!(error.message.contains("cafile nor capath"), "{error}");
        let config = parse(
            "listener 8883\ncertfile /c.crt\nkeyfile /c.key\nrequire_certificate true\ncapath /ca\n",
        );
        assert!(
            config.listeners[0]
                .tls
                .as_ref()
                .unwrap()
                .require_certificate
        );
    }

    // --- Security and per_listener_settings ----------------------------------------------

    #[test]
    fn security_options_are_global_without_per_listener_settings() {
        let config = parse(
            "listener 1883\nallow_anonymous true\nlistener 8883 127.0.0.1\npassword_file /pw\n",
        );
        assert!(!config.per_listener_settings);
        assert_eq!(config.security.allow_anonymous, Some(true));
        assert_eq!(config.security.password_file, Some(PathBuf::from("/pw")));
        for listener in &config.listeners {
            assert_eq!(listener.security, SecurityConfig::default());
            assert_eq!(config.security_for(listener), &config.security);
            assert!(config.allow_anonymous(listener));
        }
    }

    #[test]
    fn per_listener_settings_scope_security_to_each_listener() {
        let config = parse(
            "per_listener_settings true

listener 1883 127.0.0.1
allow_anonymous true

listener 8883
password_file /etc/mosquitto/passwd
acl_file /etc/mosquitto/acl

listener 9001
protocol websockets
allow_anonymous false
password_file /etc/mosquitto/ws-passwd
",
        );
        assert!(config.per_listener_settings);
        assert_eq!(config.security, SecurityConfig::default());
        let [local, tls, ws] = config.listeners.as_slice() else {
            panic!("{:?}", config.listeners);
        };
        assert!(config.allow_anonymous(local));
        assert_eq!(local.security.password_file, None);
        // Not set: refused, since listeners are configured explicitly.
        assert_eq!(tls.security.allow_anonymous, None);
        assert!(!config.allow_anonymous(tls));
        assert_eq!(
            config.security_for(tls).password_file,
            Some(PathBuf::from("/etc/mosquitto/passwd"))
        );
        assert_eq!(
            tls.security.acl_file,
            Some(PathBuf::from("/etc/mosquitto/acl"))
        );
        assert!(!config.allow_anonymous(ws));
        assert_eq!(
            ws.security.password_file,
            Some(PathBuf::from("/etc/mosquitto/ws-passwd"))
        );
        assert_eq!(ws.security.acl_file, None);
    }

    #[test]
    fn per_listener_settings_must_come_before_security_options() {
        let error = parse_error("allow_anonymous true\nper_listener_settings true\n");
        assert_eq!(error.line, 2);
        assert!(error.message.contains("before any security option"));
        // Setting it to false late is harmless.
        assert!(
            !parse("allow_anonymous true\nper_listener_settings false\n").per_listener_settings
        );
        // Once on it stays on, as in Mosquitto.
        assert!(
            parse("per_listener_settings true\nper_listener_settings false\n")
                .per_listener_settings
        );
    }

    #[test]
    fn per_listener_security_before_any_listener() {
        // A password file configures the default listener, as in Mosquitto.
        let config = parse("per_listener_settings true\npassword_file /pw\nlistener 8883\n");
        let default = &config.listeners[1];
        assert_eq!((default.port, default.bind.as_deref()), (1883, None));
        assert_eq!(default.security.password_file, Some(PathBuf::from("/pw")));

        // allow_anonymous alone does not, and is ignored with a warning.
        let config = parse("per_listener_settings true\nallow_anonymous true\nlistener 8883\n");
        assert_eq!(config.listeners.len(), 1);
        assert!(!config.allow_anonymous(&config.listeners[0]));
        assert_eq!(config.warnings.len(), 1);
        assert_eq!(config.warnings[0].line, 2);

        // In local-only mode they apply to the local-only listeners.
        let config = parse("per_listener_settings true\nallow_anonymous false\nacl_file /acl\n");
        assert!(config.local_only);
        for listener in &config.listeners {
            assert!(!config.allow_anonymous(listener));
            assert_eq!(listener.security.acl_file, Some(PathBuf::from("/acl")));
        }
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn per_listener_client_id_options_must_agree() {
        let config = parse(
            "per_listener_settings true\nlistener 1883\nauto_id_prefix x-\n\
             allow_zero_length_clientid false\nlistener 1884\nauto_id_prefix x-\n\
             allow_zero_length_clientid false\n",
        );
        assert_eq!(config.broker.auto_id_prefix, "x-");
        assert!(!config.broker.allow_zero_length_clientid);

        let error = parse_error(
            "per_listener_settings true\nlistener 1883\nlistener 1884\nauto_id_prefix y-\n",
        );
        assert_eq!(error.line, 4);
        assert!(
            error.message.contains("differs between listeners"),
            "{error}"
        );
    }

    // --- include_dir ---------------------------------------------------------------------

    #[test]
    fn include_dir_reads_conf_files_in_alphabetical_order() {
        let dir = tempfile::tempdir().unwrap();
        let conf_d = dir.path().join("conf.d");
        fs::create_dir(&conf_d).unwrap();
        fs::write(conf_d.join("b.conf"), "listener 1884\nauto_id_prefix b-\n").unwrap();
        fs::write(
            conf_d.join("a.conf"),
            "listener 1883\nautosave_on_changes true\n",
        )
        .unwrap();
        fs::write(conf_d.join("c.conf.disabled"), "listener 1999\n").unwrap();
        fs::write(conf_d.join("README"), "not a config file\n").unwrap();
        fs::write(conf_d.join(".conf"), "listener 1998\n").unwrap();
        let main = dir.path().join("mosquitto.conf");
        fs::write(&main, "listener 1882\ninclude_dir conf.d\nlistener 1885\n").unwrap();

        let config = load(&main).unwrap();
        let ports: Vec<_> = config.listeners.iter().map(|l| l.port).collect();
        assert_eq!(ports, [1882, 1883, 1884, 1885]);
        assert_eq!(
            config.files,
            [main.clone(), conf_d.join("a.conf"), conf_d.join("b.conf")]
        );
        assert_eq!(config.broker.auto_id_prefix, "b-");
        // The warning names the included file and its line.
        assert_eq!(config.warnings.len(), 1);
        assert_eq!(config.warnings[0].file, conf_d.join("a.conf"));
        assert_eq!(config.warnings[0].line, 2);
    }

    #[test]
    fn each_included_file_starts_at_the_default_listener() {
        let dir = tempfile::tempdir().unwrap();
        let conf_d = dir.path().join("conf.d");
        fs::create_dir(&conf_d).unwrap();
        // Without a listener line of its own, this configures the default listener, not
        // listener 8883 of the main file.
        fs::write(conf_d.join("tls.conf"), "max_connections 7\n").unwrap();
        let main = dir.path().join("mosquitto.conf");
        fs::write(
            &main,
            "listener 8883\ninclude_dir conf.d\nsocket_domain ipv4\n",
        )
        .unwrap();

        let config = load(&main).unwrap();
        let [explicit, default] = config.listeners.as_slice() else {
            panic!("{:?}", config.listeners);
        };
        assert_eq!(explicit.port, 8883);
        assert_eq!(explicit.max_connections, None);
        // The main file carries on with its own listener after the include.
        assert_eq!(explicit.socket_domain, Some(SocketDomain::Ipv4));
        assert_eq!(default.port, 1883);
        assert_eq!(default.max_connections, Some(7));
    }

    #[test]
    fn include_dir_errors() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("mosquitto.conf");

        fs::write(&main, "listener 1883\n\ninclude_dir missing.d\n").unwrap();
        let error = load(&main).unwrap_err();
        assert_eq!((error.file.as_path(), error.line), (main.as_path(), 3));
        assert!(error.message.contains("cannot read include_dir"), "{error}");

        // An error inside an included file names that file and line.
        let conf_d = dir.path().join("conf.d");
        fs::create_dir(&conf_d).unwrap();
        fs::write(conf_d.join("bad.conf"), "# ok\nmax_keepalive forever\n").unwrap();
        fs::write(&main, "include_dir conf.d\n").unwrap();
        let error = load(&main).unwrap_err();
        assert_eq!((error.file, error.line), (conf_d.join("bad.conf"), 2));

        // The main file may not include itself.
        fs::remove_file(conf_d.join("bad.conf")).unwrap();
        fs::write(&main, "include_dir .\n").unwrap();
        let error = load(&main).unwrap_err();
        assert!(error.message.contains("main configuration file"), "{error}");
    }

    #[test]
    fn include_dir_in_an_included_file_is_ignored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let conf_d = dir.path().join("conf.d");
        let nested = dir.path().join("nested.d");
        fs::create_dir(&conf_d).unwrap();
        fs::create_dir(&nested).unwrap();
        fs::write(nested.join("x.conf"), "listener 1999\n").unwrap();
        fs::write(conf_d.join("a.conf"), "include_dir ../nested.d\n").unwrap();
        let main = dir.path().join("mosquitto.conf");
        fs::write(&main, format!("include_dir {}\n", conf_d.display())).unwrap();

        let config = load(&main).unwrap();
        assert!(config.local_only);
        assert_eq!(config.warnings.len(), 1);
        assert_eq!(config.warnings[0].file, conf_d.join("a.conf"));
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.conf");
        let error = load(&missing).unwrap_err();
        assert_eq!((error.file.as_path(), error.line), (missing.as_path(), 0));
        assert!(error.message.contains("cannot read configuration file"));
        // A directory is not a configuration file.
        assert!(load(dir.path()).is_err());
    }

    // --- Unsupported and unknown options -------------------------------------------------

    #[test]
    fn unknown_options_are_errors() {
        let e = parse_error("listener 1883\nfrobnicate_level 11\n");
        assert_eq!((e.file.as_path(), e.line), (Path::new(ORIGIN), 2));
        assert_eq!(
            e.to_string(),
            format!("{ORIGIN}:2: unknown option \"frobnicate_level\"")
        );
        // The typo that would otherwise start a broker without its password file.
        let e = parse_error("listener 1883\npassword_flie /etc/mosquitto/passwd\n");
        assert!(e.message.contains("password_flie"), "{e}");
    }

    #[test]
    fn security_critical_unsupported_options_are_errors() {
        for text in [
            "auth_plugin /usr/lib/mosquitto_auth.so",
            "plugin /usr/lib/mosquitto_dynamic_security.so",
            "global_plugin /usr/lib/p.so",
            "plugin_opt_config_file /etc/dynsec.json",
            "auth_opt_backends mysql",
            "psk_hint midge",
            "psk_file /etc/mosquitto/psk",
            "crlfile /etc/mosquitto/crl.pem",
            "use_subject_as_username true",
            "use_username_as_clientid true",
            "clientid_prefixes secure-",
            "bind_interface eth0",
            "mount_point tenant/",
            "accept_protocol_versions 5",
            "websockets_origin https://example.com",
            "disable_client_cert_date_checks true",
            "tls_engine pkcs11",
            "tls_keyform engine",
            "tls_engine_kpass_sha1 abcd",
        ] {
            let error = parse_error(&format!("listener 8883\n{text}\n"));
            assert_eq!(error.line, 2, "{text}");
            assert!(
                error.message.contains("is not supported"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn bridge_options_outside_a_bridge_are_errors() {
        for option in [
            "address x",
            "topic a/# out 1",
            "bridge_cafile /ca.crt",
            "bridge_protocol_version mqttv311",
            "remote_username u",
            "remote_password p",
            "cleansession false",
            "start_type automatic",
            "notifications false",
            "try_private true",
        ] {
            let error = parse_error(&format!("listener 1883\n{option}\n"));
            assert_eq!(error.line, 2, "{option}");
            assert!(
                error.message.contains("must follow a connection line"),
                "{option}: {error}"
            );
        }
    }

    #[test]
    fn harmless_unsupported_options_warn() {
        let options = [
            "autosave_on_changes true",
            "upgrade_outgoing_qos true",
            "check_retain_source true",
            "allow_duplicate_messages false",
            "memory_limit 1000000",
            "max_inflight_bytes 100000",
            "global_max_clients 100",
            "websockets_headers_size 8192",
            "http_dir /usr/share/mosquitto/www",
            "websockets_log_level 255",
            "log_facility 5",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "quic_log_level 1",
            "enable_control_api true",
            "retry_interval 20",
            "store_clean_interval 10",
            "ciphers ECDHE-RSA-AES256-GCM-SHA384",
            "ciphers_tls1.3 TLS_AES_256_GCM_SHA384",
            "dhparamfile /etc/mosquitto/dh.pem",
        ];
        let text = format!("listener 8883\n{}\n", options.join("\n"));
        let config = parse(&text);
        let lines: Vec<_> = config.warnings.iter().map(|w| w.line).collect();
        let expected: Vec<_> = (2..options.len() + 2).collect();
        assert_eq!(lines, expected, "{:#?}", config.warnings);
        for (warning, option) in config.warnings.iter().zip(options) {
            let name = option.split(' ').next().unwrap();
            assert!(
                warning
                    .message
                    .starts_with(&format!("{name} is not supported")),
                "{warning}"
            );
        }
    }

    #[test]
    fn unsupported_options_at_midges_behaviour_are_accepted_silently() {
        let config = parse(
            "listener 1883
use_subject_as_username false
use_username_as_clientid 0
disable_client_cert_date_checks false
tls_keyform pem
autosave_on_changes false
upgrade_outgoing_qos false
check_retain_source false
memory_limit 0
max_inflight_bytes 0
enable_control_api false
",
        );
        assert!(
            config.warnings.is_empty(),
            "{:?}",
            warning_messages(&config)
        );
    }

    #[test]
    fn every_unsupported_option_has_a_reason() {
        for entry in UNSUPPORTED_OPTIONS {
            assert!(!entry.reason.is_empty(), "{}", entry.name);
            // Options midge implements must not be listed as unsupported.
            let name = entry.name.trim_end_matches('*');
            assert!(
                !matches!(
                    name,
                    "listener" | "port" | "certfile" | "password_file" | "max_connections"
                ),
                "{name}"
            );
        }
        assert_eq!(
            unsupported_option("bridge_receive_maximum").map(|entry| entry.class),
            Some(Unsupported::Refuse)
        );
        assert!(unsupported_option("listener").is_none());
    }

    // --- Errors --------------------------------------------------------------------------

    #[test]
    fn errors_name_the_file_and_line() {
        let error = parse_error("# a comment\n\nlistener 1883\nmax_connections ten\n");
        assert_eq!(error.file, PathBuf::from(ORIGIN));
        assert_eq!(error.line, 4);
        assert_eq!(
            error.to_string(),
            format!("{ORIGIN}:4: max_connections: expected a whole number, found \"ten\"")
        );
        let error = ConfigError::new(Path::new("/x.conf"), 0, "broken");
        assert_eq!(error.to_string(), "/x.conf: broken");
        let boxed: Box<dyn std::error::Error> = Box::new(error);
        assert_eq!(boxed.to_string(), "/x.conf: broken");
    }

    // --- Realistic configurations --------------------------------------------------------

    #[test]
    fn debian_layout_with_conf_d_loads() {
        let main = fixture("debian/mosquitto.conf");
        let config = load(&main).unwrap();
        assert!(config.warnings.is_empty(), "{:#?}", config.warnings);
        let conf_d = fixture("debian/conf.d");
        assert_eq!(
            config.files,
            [
                main,
                conf_d.join("10-listeners.conf"),
                conf_d.join("20-security.conf"),
                conf_d.join("30-tuning.conf"),
            ]
        );
        assert_eq!(
            config.pid_file,
            Some(PathBuf::from("/run/mosquitto/mosquitto.pid"))
        );
        assert!(config.persistence.enabled);
        assert_eq!(
            config.persistence.path(),
            PathBuf::from("/var/lib/mosquitto/mosquitto.db")
        );
        assert_eq!(
            config.log.dest,
            [LogDest::File(PathBuf::from(
                "/var/log/mosquitto/mosquitto.log"
            ))]
        );
        assert_eq!(
            config.log.types,
            LogTypes {
                error: true,
                warning: true,
                notice: true,
                ..LogTypes::NONE
            }
        );

        let [lan, mqtts, wss] = config.listeners.as_slice() else {
            panic!("{:?}", config.listeners);
        };
        assert_eq!(
            (lan.port, lan.bind.as_deref()),
            (1883, Some("192.168.1.10"))
        );
        assert!(lan.tls.is_none());
        let tls = mqtts.tls.as_ref().unwrap();
        assert_eq!(mqtts.port, 8883);
        assert_eq!(
            tls.cafile,
            Some(PathBuf::from("/etc/mosquitto/ca_certificates/ca.crt"))
        );
        assert!(!tls.require_certificate);
        assert_eq!(tls.tls_version, Some(TlsVersion::Tlsv1_2));
        assert_eq!(wss.protocol, ListenerProtocol::WebSockets);
        assert!(wss.tls.is_some());
        for listener in &config.listeners {
            assert!(!config.allow_anonymous(listener));
            let security = config.security_for(listener);
            assert_eq!(
                security.password_file,
                Some(PathBuf::from("/etc/mosquitto/passwd"))
            );
            assert_eq!(security.acl_file, Some(PathBuf::from("/etc/mosquitto/acl")));
        }

        assert_eq!(config.broker.max_inflight_messages, 40);
        assert_eq!(config.broker.max_queued_messages, 5000);
        assert_eq!(config.broker.max_keepalive, Some(300));
        assert_eq!(config.broker.message_size_limit, 1_048_576);
        assert_eq!(config.persistence.autosave_interval, 600);
        assert_eq!(config.sys_interval, 30);
        assert_eq!(config.broker.sys_interval, 30);
    }

    #[test]
    fn full_single_file_configuration_parses() {
        // The shape of a typical hand-written production file: general options, logging,
        // per-listener security, and a plain, a TLS and a WebSocket listener.
        let config = parse(
            "# =================================================================
# General configuration
# =================================================================
per_listener_settings true
allow_zero_length_clientid true
auto_id_prefix auto-
persistent_client_expiration 14d
max_inflight_messages 20
max_queued_messages 1000
queue_qos0_messages false
message_size_limit 0
retain_available true
set_tcp_nodelay false
sys_interval 10
pid_file /var/run/mosquitto.pid
user mosquitto

# =================================================================
# Listeners
# =================================================================
listener 1883 localhost
socket_domain ipv4
max_connections -1
protocol mqtt
allow_anonymous true

listener 8883
certfile /etc/letsencrypt/live/mqtt.example.com/fullchain.pem
keyfile /etc/letsencrypt/live/mqtt.example.com/privkey.pem
cafile /etc/ssl/certs/ca-certificates.crt
tls_version tlsv1.2
password_file /etc/mosquitto/passwd
acl_file /etc/mosquitto/aclfile

listener 8884
certfile /etc/mosquitto/certs/server.crt
keyfile /etc/mosquitto/certs/server.key
cafile /etc/mosquitto/ca_certificates/clients-ca.crt
require_certificate true
use_identity_as_username true
acl_file /etc/mosquitto/aclfile-devices

listener 9001
protocol websockets
http_dir /usr/share/mosquitto/www
password_file /etc/mosquitto/passwd

# =================================================================
# Persistence and logging
# =================================================================
autosave_interval 1800
autosave_on_changes false
persistence true
persistence_file mosquitto.db
persistence_location /var/lib/mosquitto/
log_dest stderr
log_dest file /var/log/mosquitto/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp true
",
        );
        assert_eq!(config.listeners.len(), 4);
        assert!(config.allow_anonymous(&config.listeners[0]));
        for listener in &config.listeners[1..] {
            assert!(!config.allow_anonymous(listener), "{listener}");
        }
        assert!(
            config.listeners[2]
                .tls
                .as_ref()
                .unwrap()
                .use_identity_as_username
        );
        assert_eq!(
            config.listeners[2].security.acl_file,
            Some(PathBuf::from("/etc/mosquitto/aclfile-devices"))
        );
        // Warned about: the client id options before any listener, which apply to a default
        // listener that is never started (as in Mosquitto), the session expiry, the user and
        // http_dir.
        let lines: Vec<_> = config.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [5, 6, 7, 16, 45], "{:#?}", config.warnings);
    }
}
