//! Bridges: Mosquitto's `connection` sections.
//!
//! A `connection NAME` line starts a bridge; the bridge options after it (in the same file)
//! configure it until the next `connection` line. Other options may come in between and keep
//! their usual meaning: a `listener` line does not end a bridge, as in Mosquitto. A bridge option
//! before any `connection` line of its file is an error.
//!
//! What the broker needs goes into [`midge_core::broker::bridge::BridgeConfig`]; what only the
//! daemon needs (TLS files, which it loads when it starts) goes into [`BridgeLink`]. Both lists
//! are in file order, so a bridge's index names it in both.
//!
//! # Options
//!
//! Implemented as in Mosquitto 2: `connection`, `address`/`addresses` (`host[:port]`, port 1883
//! by default, several for failover; an IPv6 address needs a port: `[::1]:1883` or
//! `::1:1883`), `round_robin`, `topic`, `remote_clientid` (and its old name `clientid`),
//! `local_clientid`, `remote_username` (`username`), `remote_password` (`password`),
//! `cleansession`, `local_cleansession`, `bridge_protocol_version`, `try_private`,
//! `keepalive_interval`, `restart_timeout`, `notifications`, `notifications_local_only`,
//! `notification_topic`, `start_type automatic`, and for TLS `bridge_cafile`, `bridge_capath`,
//! `bridge_certfile`, `bridge_keyfile`, `bridge_insecure`, `bridge_tls_version` and
//! `bridge_alpn`. `idle_timeout` and `threshold` are read and checked; they only matter to
//! `start_type lazy`, so they change nothing for a bridge that starts automatically.
//!
//! Refused, since ignoring them would change what crosses the bridge or who it acts as:
//! `start_type lazy|once`, `local_username`, `local_password`, `bridge_outgoing_retain false`,
//! `bridge_max_packet_size` other than 0, `bridge_bind_address`, `bridge_identity`,
//! `bridge_psk`, `bridge_require_ocsp true`. Warned about: `bridge_attempt_unsubscribe false`.
//!
//! # Where midge differs from Mosquitto
//!
//! - A TLS option without `bridge_cafile` or `bridge_capath` is an error: Mosquitto would
//!   connect without TLS. TLS files that are missing or unreadable are found at startup (and by
//!   `--test-config`), not at the first connection attempt.
//! - Topic patterns must be valid topic filters, and `remote_password` needs `remote_username`
//!   (Mosquitto silently drops the password).
//! - `bridge_tls_version tlsv1.1` is read as TLS 1.2 with a warning, as for listeners.

use super::{ConfigError, ConfigWarning, Line, Located, Location, TlsVersion, set_once};
use midge_core::broker::bridge::{
    Backoff, BridgeAddress, BridgeConfig, BridgeDirection, BridgeTopic,
};
use midge_core::codec::{ProtocolVersion, QoS, topic};
use std::path::PathBuf;

/// Port of a bridge address that names none.
const DEFAULT_BRIDGE_PORT: u16 = 1883;
/// Mosquitto's smallest keep alive for bridges; lower values are raised to it with a warning.
const MIN_KEEPALIVE: i64 = 5;
/// Longest string MQTT can carry (a client id, a user name, a topic).
const MAX_MQTT_STRING: usize = 65_535;
/// Addresses one bridge may list: a failover list, not a resource a remote broker can grow.
const MAX_ADDRESSES: usize = 64;

/// The options that configure the bridge being defined.
pub(super) const OPTIONS: &[&str] = &[
    "address",
    "addresses",
    "round_robin",
    "topic",
    "remote_clientid",
    "clientid",
    "local_clientid",
    "remote_username",
    "username",
    "remote_password",
    "password",
    "local_username",
    "local_password",
    "cleansession",
    "local_cleansession",
    "bridge_protocol_version",
    "try_private",
    "keepalive_interval",
    "restart_timeout",
    "notifications",
    "notifications_local_only",
    "notification_topic",
    "start_type",
    "idle_timeout",
    "threshold",
    "bridge_attempt_unsubscribe",
    "bridge_outgoing_retain",
    "bridge_max_packet_size",
    "bridge_bind_address",
    "bridge_cafile",
    "bridge_capath",
    "bridge_certfile",
    "bridge_keyfile",
    "bridge_insecure",
    "bridge_tls_version",
    "bridge_alpn",
    "bridge_identity",
    "bridge_psk",
    "bridge_require_ocsp",
];

/// What the daemon itself needs of a bridge: its name for the log, where it was defined, and
/// its TLS settings. The broker's part is the [`BridgeConfig`] at the same index of
/// `Config::bridges`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeLink {
    pub name: String,
    /// The `connection` line.
    pub defined_at: Location,
    /// TLS towards the remote broker; `None` for plain TCP.
    pub tls: Option<BridgeTls>,
}

/// A file a TLS option names, with the line that names it (loading errors point there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAt {
    pub path: PathBuf,
    pub at: Location,
}

/// How the bridge speaks TLS to the remote broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTls {
    /// PEM CA certificates the remote's certificate must chain to (`bridge_cafile`).
    pub cafile: Option<FileAt>,
    /// A directory of PEM CA certificates (`bridge_capath`). At least one of the two is set.
    pub capath: Option<FileAt>,
    /// The client certificate chain and key the bridge presents, if the remote asks for one.
    pub certfile: Option<FileAt>,
    pub keyfile: Option<FileAt>,
    /// `bridge_insecure true`: accept a certificate that chains to the CAs but names another
    /// host. Dates and the chain are still checked.
    pub insecure: bool,
    /// Oldest TLS version (`bridge_tls_version`, default TLS 1.2 as in Mosquitto).
    pub version: TlsVersion,
    /// The ALPN protocol to offer (`bridge_alpn`).
    pub alpn: Option<String>,
}

/// A bridge as the lines so far describe it.
#[derive(Debug)]
pub(super) struct BridgeDraft {
    name: String,
    at: Location,
    addresses: Option<Located<Vec<BridgeAddress>>>,
    round_robin: bool,
    topics: Vec<BridgeTopic>,
    remote_clientid: Option<Located<String>>,
    local_clientid: Option<Located<String>>,
    remote_username: Option<Located<String>>,
    remote_password: Option<Located<Vec<u8>>>,
    clean_session: bool,
    local_clean_session: Option<bool>,
    protocol: ProtocolVersion,
    try_private: bool,
    keepalive_secs: u16,
    restart: Backoff,
    notifications: bool,
    notifications_local_only: bool,
    notification_topic: Option<Located<String>>,
    tls: TlsDraft,
}

#[derive(Debug, Default)]
struct TlsDraft {
    cafile: Option<Located<PathBuf>>,
    capath: Option<Located<PathBuf>>,
    certfile: Option<Located<PathBuf>>,
    keyfile: Option<Located<PathBuf>>,
    insecure: Option<Located<bool>>,
    version: Option<Located<TlsVersion>>,
    alpn: Option<Located<String>>,
}

impl BridgeDraft {
    /// `connection NAME`, with Mosquitto's defaults.
    pub(super) fn start(
        line: &Line<'_>,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Result<BridgeDraft, ConfigError> {
        let name = line.value(warnings)?.to_owned();
        Ok(BridgeDraft {
            name,
            at: line.location(),
            addresses: None,
            round_robin: false,
            topics: Vec::new(),
            remote_clientid: None,
            local_clientid: None,
            remote_username: None,
            remote_password: None,
            clean_session: false,
            local_clean_session: None,
            protocol: ProtocolVersion::V3_1_1,
            try_private: true,
            keepalive_secs: 60,
            restart: Backoff::Jitter {
                base_secs: 5,
                cap_secs: 30,
            },
            notifications: true,
            notifications_local_only: false,
            notification_topic: None,
            tls: TlsDraft::default(),
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn location(&self) -> &Location {
        &self.at
    }

    /// Applies one of [`OPTIONS`] to this bridge.
    pub(super) fn apply(
        &mut self,
        line: &Line<'_>,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Result<(), ConfigError> {
        let tls = &mut self.tls;
        match line.option {
            "address" | "addresses" => {
                let addresses = addresses(line)?;
                if let Some(previous) = &self.addresses {
                    return Err(line.error(format!(
                        "the addresses of bridge \"{}\" are already set at {}; list them all on \
                         one line",
                        self.name, previous.at
                    )));
                }
                self.addresses = Some(Located {
                    value: addresses,
                    at: line.location(),
                });
            }
            "round_robin" => self.round_robin = line.boolean(warnings)?,
            "topic" => self.topics.push(bridge_topic(line)?),
            "remote_clientid" | "clientid" => {
                set_once(&mut self.remote_clientid, line, mqtt_string(line)?)?;
            }
            "local_clientid" => set_once(&mut self.local_clientid, line, mqtt_string(line)?)?,
            "remote_username" | "username" => {
                set_once(&mut self.remote_username, line, mqtt_string(line)?)?;
            }
            "remote_password" | "password" => {
                let password = line.text()?.as_bytes().to_vec();
                if password.len() > MAX_MQTT_STRING {
                    return Err(line.error(format!(
                        "{}: longer than MQTT allows ({MAX_MQTT_STRING} bytes)",
                        line.option
                    )));
                }
                set_once(&mut self.remote_password, line, password)?;
            }
            "cleansession" => self.clean_session = line.boolean(warnings)?,
            "local_cleansession" => self.local_clean_session = Some(line.boolean(warnings)?),
            "bridge_protocol_version" => {
                self.protocol = match line.value(warnings)? {
                    "mqttv31" => ProtocolVersion::V3_1,
                    "mqttv311" => ProtocolVersion::V3_1_1,
                    "mqttv50" => ProtocolVersion::V5,
                    other => {
                        return Err(line.error(format!(
                            "invalid bridge_protocol_version \"{other}\": expected mqttv31, \
                             mqttv311 or mqttv50"
                        )));
                    }
                };
            }
            "try_private" => self.try_private = line.boolean(warnings)?,
            "keepalive_interval" => {
                let mut secs = line.integer_in(warnings, i64::MIN..=i64::from(u16::MAX))?;
                if secs < MIN_KEEPALIVE {
                    warnings.push(line.warning(format!(
                        "keepalive_interval {secs} is too low; {MIN_KEEPALIVE} seconds is used \
                         (as in Mosquitto)"
                    )));
                    secs = MIN_KEEPALIVE;
                }
                self.keepalive_secs = u16::try_from(secs).unwrap_or(u16::MAX);
            }
            "restart_timeout" => self.restart = restart_timeout(line, warnings)?,
            "notifications" => self.notifications = line.boolean(warnings)?,
            "notifications_local_only" => {
                self.notifications_local_only = line.boolean(warnings)?;
            }
            "notification_topic" => {
                let name = mqtt_string(line)?;
                if !topic::is_valid_name(&name) {
                    return Err(line.error(format!(
                        "notification_topic \"{name}\" is not a topic name: wildcards cannot be \
                         published to [MQTT-3.3.2-2]"
                    )));
                }
                set_once(&mut self.notification_topic, line, name)?;
            }
            "start_type" => match line.value(warnings)? {
                "automatic" => {}
                kind @ ("lazy" | "once") => {
                    return Err(line.error(format!(
                        "start_type {kind} is not supported: midge starts every bridge when it \
                         starts and reconnects it when it fails (start_type automatic); a {kind} \
                         bridge would connect when the configuration says it should not"
                    )));
                }
                "manual" => {
                    return Err(line.error(
                        "start_type manual is not supported (Mosquitto does not support it \
                         either)",
                    ));
                }
                other => {
                    return Err(line.error(format!(
                        "invalid start_type \"{other}\": expected automatic, lazy or once"
                    )));
                }
            },
            // Only lazy bridges use these; a bridge midge runs starts automatically, for which
            // Mosquitto ignores them too.
            "idle_timeout" | "threshold" => {
                line.integer(warnings)?;
            }
            "bridge_attempt_unsubscribe" => {
                if !line.boolean(warnings)? {
                    warnings.push(line.warning(
                        "bridge_attempt_unsubscribe false is not supported and is ignored: the \
                         bridge may unsubscribe on the remote broker from the topics it only \
                         sends, which changes nothing it carries",
                    ));
                }
            }
            "bridge_outgoing_retain" => {
                if !line.boolean(warnings)? {
                    return Err(line.error(
                        "bridge_outgoing_retain false is not supported: midge would send retained \
                         messages to a remote broker the configuration says does not take them",
                    ));
                }
            }
            "bridge_max_packet_size" => {
                if line.integer(warnings)? != 0 {
                    return Err(line.error(
                        "bridge_max_packet_size is not supported: midge would send the remote \
                         broker messages larger than the configuration allows (0, no limit, is \
                         accepted)",
                    ));
                }
            }
            "local_username" | "local_password" => {
                return Err(line.error(format!(
                    "{} is not supported: the bridge's local session would not be the user the \
                     password file and ACLs know it as",
                    line.option
                )));
            }
            "bridge_bind_address" => {
                return Err(line.error(
                    "bridge_bind_address is not supported: the bridge would connect from \
                     another address than the configuration asks",
                ));
            }
            "bridge_identity" | "bridge_psk" => {
                return Err(line.error(format!(
                    "{} is not supported: TLS-PSK is not supported, and the bridge would run \
                     without the encryption and authentication the pre-shared key provides",
                    line.option
                )));
            }
            "bridge_require_ocsp" => {
                if line.boolean(warnings)? {
                    return Err(line.error(
                        "bridge_require_ocsp true is not supported: the remote broker's \
                         certificate would be accepted without the OCSP status the configuration \
                         requires",
                    ));
                }
            }
            "bridge_cafile" => set_once(&mut tls.cafile, line, PathBuf::from(line.text()?))?,
            "bridge_capath" => set_once(&mut tls.capath, line, PathBuf::from(line.text()?))?,
            "bridge_certfile" => set_once(&mut tls.certfile, line, PathBuf::from(line.text()?))?,
            "bridge_keyfile" => set_once(&mut tls.keyfile, line, PathBuf::from(line.text()?))?,
            "bridge_insecure" => {
                let insecure = line.boolean(warnings)?;
                if insecure {
                    warnings.push(line.warning(format!(
                        "bridge \"{}\" accepts a certificate for another host name \
                         (bridge_insecure true): anyone with a certificate from its CAs can pose \
                         as the remote broker",
                        self.name
                    )));
                }
                tls.insecure = Some(Located {
                    value: insecure,
                    at: line.location(),
                });
            }
            "bridge_tls_version" => {
                let version = match line.value(warnings)? {
                    "tlsv1.3" => TlsVersion::Tlsv1_3,
                    "tlsv1.2" => TlsVersion::Tlsv1_2,
                    "tlsv1.1" => {
                        warnings.push(line.warning(
                            "bridge_tls_version tlsv1.1 is not supported; TLS 1.2 is the oldest \
                             version midge speaks",
                        ));
                        TlsVersion::Tlsv1_2
                    }
                    other => {
                        return Err(line.error(format!(
                            "invalid bridge_tls_version \"{other}\": expected tlsv1.3, tlsv1.2 \
                             or tlsv1.1"
                        )));
                    }
                };
                set_once(&mut tls.version, line, version)?;
            }
            "bridge_alpn" => {
                let alpn = line.value(warnings)?.to_owned();
                // An ALPN protocol id is 1 to 255 bytes (RFC 7301, 3.1).
                if alpn.len() > 255 {
                    return Err(line.error("bridge_alpn: longer than 255 bytes"));
                }
                set_once(&mut tls.alpn, line, alpn)?;
            }
            other => unreachable!("{other} is not a bridge option"),
        }
        Ok(())
    }

    /// The finished bridge, with the defaults that depend on other options (and on the host
    /// name, for the remote client id).
    pub(super) fn build(self, hostname: &str) -> Result<(BridgeConfig, BridgeLink), ConfigError> {
        let Some(addresses) = self.addresses else {
            return Err(ConfigError::at(
                &self.at,
                format!(
                    "bridge \"{}\" has no address; give the remote broker's with address \
                     HOST[:PORT]",
                    self.name
                ),
            ));
        };
        if self.topics.is_empty() {
            return Err(ConfigError::at(
                &self.at,
                format!(
                    "bridge \"{}\" has no topic line, so it would carry nothing",
                    self.name
                ),
            ));
        }
        if let (Some(password), None) = (&self.remote_password, &self.remote_username) {
            return Err(ConfigError::at(
                &password.at,
                "remote_password is set but remote_username is not; MQTT 3.1.1 cannot send a \
                 password without a user name [MQTT-3.1.2-22]",
            ));
        }
        let tls = self.tls.build()?;
        let remote_clientid = match self.remote_clientid {
            Some(id) => id.value,
            None => format!("{hostname}.{}", self.name),
        };
        let local_clientid = match self.local_clientid {
            Some(id) => id.value,
            None => format!("local.{remote_clientid}"),
        };
        let notification_topic = match self.notification_topic {
            Some(topic) => topic.value,
            None => format!("$SYS/broker/connection/{remote_clientid}/state"),
        };
        let config = BridgeConfig {
            name: self.name.clone(),
            addresses: addresses.value,
            round_robin: self.round_robin,
            topics: self.topics,
            remote_clientid,
            local_clientid,
            remote_username: self.remote_username.map(|u| u.value),
            remote_password: self.remote_password.map(|p| p.value),
            clean_session: self.clean_session,
            local_clean_session: self.local_clean_session.unwrap_or(self.clean_session),
            protocol: self.protocol,
            try_private: self.try_private,
            keepalive_secs: self.keepalive_secs,
            restart: self.restart,
            notifications: self.notifications,
            notifications_local_only: self.notifications_local_only,
            notification_topic,
        };
        let link = BridgeLink {
            name: self.name,
            defined_at: self.at,
            tls,
        };
        Ok((config, link))
    }
}

impl TlsDraft {
    /// The TLS settings, or none. Any TLS option without a CA to check the remote against is an
    /// error: Mosquitto would quietly connect without TLS.
    fn build(self) -> Result<Option<BridgeTls>, ConfigError> {
        let file = |slot: Option<Located<PathBuf>>| {
            slot.map(|set| FileAt {
                path: set.value,
                at: set.at,
            })
        };
        if self.cafile.is_none() && self.capath.is_none() {
            let stray = [
                self.certfile.map(|set| ("bridge_certfile", set.at)),
                self.keyfile.map(|set| ("bridge_keyfile", set.at)),
                self.insecure
                    .filter(|set| set.value)
                    .map(|set| ("bridge_insecure", set.at)),
                self.version.map(|set| ("bridge_tls_version", set.at)),
                self.alpn.map(|set| ("bridge_alpn", set.at)),
            ];
            return match stray.into_iter().flatten().next() {
                None => Ok(None),
                Some((option, at)) => Err(ConfigError::at(
                    &at,
                    format!(
                        "{option} is set but neither bridge_cafile nor bridge_capath is; without \
                         a CA to check the remote broker against, this bridge would not use TLS"
                    ),
                )),
            };
        }
        match (&self.certfile, &self.keyfile) {
            (Some(certfile), None) => {
                return Err(ConfigError::at(
                    &certfile.at,
                    "bridge_certfile is set but bridge_keyfile is not; a client certificate \
                     needs both",
                ));
            }
            (None, Some(keyfile)) => {
                return Err(ConfigError::at(
                    &keyfile.at,
                    "bridge_keyfile is set but bridge_certfile is not; a client certificate \
                     needs both",
                ));
            }
            _ => {}
        }
        Ok(Some(BridgeTls {
            cafile: file(self.cafile),
            capath: file(self.capath),
            certfile: file(self.certfile),
            keyfile: file(self.keyfile),
            insecure: self.insecure.is_some_and(|set| set.value),
            version: self.version.map_or(TlsVersion::Tlsv1_2, |set| set.value),
            alpn: self.alpn.map(|set| set.value),
        }))
    }
}

/// A string option that MQTT carries as a UTF-8 string: at most 65,535 bytes.
fn mqtt_string(line: &Line<'_>) -> Result<String, ConfigError> {
    let value = line.text()?;
    if value.len() > MAX_MQTT_STRING {
        return Err(line.error(format!(
            "{}: longer than MQTT allows ({MAX_MQTT_STRING} bytes)",
            line.option
        )));
    }
    Ok(value.to_owned())
}

/// `address HOST[:PORT] [HOST[:PORT]...]`.
fn addresses(line: &Line<'_>) -> Result<Vec<BridgeAddress>, ConfigError> {
    let list = line
        .words()
        .map(|word| address(line, word))
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err(line.missing());
    }
    if list.len() > MAX_ADDRESSES {
        return Err(line.error(format!(
            "{}: more than {MAX_ADDRESSES} addresses",
            line.option
        )));
    }
    Ok(list)
}

/// One `HOST[:PORT]`. An IPv6 address contains colons, so it needs a port, as in Mosquitto:
/// `fe80::1:1883` is `fe80::1` port 1883. In brackets, `[::1]:1883`, the port may be left out.
fn address(line: &Line<'_>, word: &str) -> Result<BridgeAddress, ConfigError> {
    let invalid = |why: &str| line.error(format!("invalid bridge address \"{word}\": {why}"));
    let (host, port) = if let Some(rest) = word.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid("no closing ]"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid("not an IPv6 address in brackets"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(invalid("expected :PORT after ]")),
            },
        }
    } else {
        // As Mosquitto reads it: the last colon starts the port, so an IPv6 address without
        // brackets always needs one.
        match word.rsplit_once(':') {
            Some((host, _))
                if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() =>
            {
                return Err(invalid(
                    "an IPv6 address needs a port, as in Mosquitto: write [ADDRESS]:PORT or \
                     ADDRESS:PORT",
                ));
            }
            Some((host, port)) => (host, Some(port)),
            None => (word, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let port = match port {
        None => DEFAULT_BRIDGE_PORT,
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid("the port must be 1 to 65535"))?,
    };
    Ok(BridgeAddress {
        host: host.to_owned(),
        port,
    })
}

/// `topic PATTERN [in|out|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]`, where `""` stands for an
/// empty pattern or prefix.
fn bridge_topic(line: &Line<'_>) -> Result<BridgeTopic, ConfigError> {
    // The pattern may be `#`, so `words` (which ends at a word starting with `#`) cannot read
    // it; after the pattern such a word starts a comment, since no direction, QoS or prefix
    // starts with `#`.
    let mut words = line.rest.split_whitespace();
    let pattern = words.next().ok_or_else(|| line.missing())?;
    let mut rest = words.take_while(|word| !word.starts_with('#'));
    let empty_or = |word: &str| {
        if word == "\"\"" {
            String::new()
        } else {
            word.to_owned()
        }
    };
    let pattern = empty_or(pattern);
    let direction = match rest.next() {
        None => BridgeDirection::Out,
        Some(word) => match word.to_ascii_lowercase().as_str() {
            "out" => BridgeDirection::Out,
            "in" => BridgeDirection::In,
            "both" => BridgeDirection::Both,
            _ => {
                return Err(line.error(format!(
                    "invalid bridge topic direction \"{word}\": expected in, out or both"
                )));
            }
        },
    };
    let qos = match rest.next() {
        None | Some("0") => QoS::AtMostOnce,
        Some("1") => QoS::AtLeastOnce,
        Some("2") => QoS::ExactlyOnce,
        Some(other) => {
            return Err(line.error(format!(
                "invalid bridge topic QoS \"{other}\": expected 0, 1 or 2"
            )));
        }
    };
    // Mosquitto reads a local prefix without a remote prefix as an empty remote prefix.
    let local_prefix = rest.next().map(empty_or).unwrap_or_default();
    let remote_prefix = rest.next().map(empty_or).unwrap_or_default();
    if rest.next().is_some() {
        return Err(line.error(
            "topic takes a pattern, a direction, a QoS and two prefixes; there is more on the \
             line",
        ));
    }
    for (what, prefix) in [("local", &local_prefix), ("remote", &remote_prefix)] {
        if prefix.contains([topic::MULTI_LEVEL, topic::SINGLE_LEVEL]) {
            return Err(line.error(format!(
                "invalid bridge topic {what} prefix \"{prefix}\": a prefix cannot hold a \
                 wildcard"
            )));
        }
    }
    if pattern.is_empty() {
        // The prefixes then name one topic on each side, so both must be there.
        if local_prefix.is_empty() || remote_prefix.is_empty() {
            return Err(line.error(
                "a bridge topic with an empty pattern (\"\") needs both a local and a remote \
                 prefix: they are the topics on each side",
            ));
        }
    }
    for (side, prefix) in [("local", &local_prefix), ("remote", &remote_prefix)] {
        let full = format!("{prefix}{pattern}");
        if full.len() > MAX_MQTT_STRING || !topic::is_valid_filter(&full) {
            return Err(line.error(format!(
                "invalid bridge topic: the {side} topic filter \"{full}\" is not a valid \
                 filter (a wildcard must fill a whole level, and # must come last \
                 [MQTT-4.7.1-2] [MQTT-4.7.1-3])"
            )));
        }
    }
    Ok(BridgeTopic {
        pattern,
        direction,
        qos,
        local_prefix,
        remote_prefix,
    })
}

/// `restart_timeout SECS` (a constant delay) or `restart_timeout BASE CAP` (jitter between
/// them). Delays below a second are raised to one, as in Mosquitto: no delay at all would redial
/// a failing remote in a tight loop.
fn restart_timeout(
    line: &Line<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Backoff, ConfigError> {
    let mut words = line.words();
    let first = words.next().ok_or_else(|| line.missing())?;
    let second = words.next();
    if words.next().is_some() {
        warnings.push(
            line.warning(
                "restart_timeout takes one or two values; the rest of the line is ignored",
            ),
        );
    }
    let mut seconds = |text: &str| -> Result<u32, ConfigError> {
        let value = line.parse_integer(text)?;
        if value < 1 {
            warnings.push(line.warning(format!(
                "restart_timeout {value} is too low; 1 second is used (as in Mosquitto)"
            )));
            return Ok(1);
        }
        u32::try_from(value).map_err(|_| {
            line.error(format!(
                "restart_timeout: {value} is out of range (1 to {})",
                u32::MAX
            ))
        })
    };
    let base = seconds(first)?;
    match second {
        None => Ok(Backoff::Constant { secs: base }),
        Some(text) => {
            let cap = seconds(text)?;
            if cap < base {
                return Err(line.error(format!(
                    "restart_timeout: the cap ({cap}) is lower than the base ({base})"
                )));
            }
            Ok(Backoff::Jitter {
                base_secs: base,
                cap_secs: cap,
            })
        }
    }
}

/// This machine's name, for the default remote client id (`<hostname>.<connection>`, as in
/// Mosquitto). Read without a system call wrapper: from the kernel's file where there is one,
/// else from the environment.
pub(super) fn hostname() -> String {
    let from_file = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_owned());
    from_file
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::{DaemonConfig, parse_str};
    use super::*;
    use std::path::Path;

    const ORIGIN: &str = "/etc/mosquitto/mosquitto.conf";

    fn parse(text: &str) -> DaemonConfig {
        parse_str(text, Path::new(ORIGIN)).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn parse_error(text: &str) -> ConfigError {
        match parse_str(text, Path::new(ORIGIN)) {
            Ok(_) => panic!("{text:?} was accepted"),
            Err(e) => e,
        }
    }

    fn only_bridge(config: &DaemonConfig) -> &BridgeConfig {
        assert_eq!(config.broker.bridges.len(), 1);
        assert_eq!(config.bridges.len(), 1);
        &config.broker.bridges[0]
    }

    fn topic(text: &str) -> BridgeTopic {
        let config = parse(&format!(
            "listener 1883\nconnection b\naddress 10.0.0.1\ntopic {text}\n"
        ));
        only_bridge(&config).topics[0].clone()
    }

    #[test]
    fn no_connection_means_no_bridge() {
        let config = parse("listener 1883\n");
        assert!(config.broker.bridges.is_empty());
        assert!(config.bridges.is_empty());
    }

    #[test]
    fn defaults_follow_mosquitto() {
        let config = parse("connection cloud\naddress broker.example.com\ntopic a/#\n");
        let bridge = only_bridge(&config);
        let host = hostname();
        assert_eq!(bridge.name, "cloud");
        assert_eq!(
            bridge.addresses,
            [BridgeAddress {
                host: "broker.example.com".into(),
                port: 1883
            }]
        );
        assert!(!bridge.round_robin);
        assert_eq!(bridge.remote_clientid, format!("{host}.cloud"));
        assert_eq!(bridge.local_clientid, format!("local.{host}.cloud"));
        assert_eq!(
            bridge.notification_topic,
            format!("$SYS/broker/connection/{host}.cloud/state")
        );
        assert_eq!(bridge.remote_username, None);
        assert_eq!(bridge.remote_password, None);
        assert!(!bridge.clean_session);
        assert!(!bridge.local_clean_session);
        assert_eq!(bridge.protocol, ProtocolVersion::V3_1_1);
        assert!(bridge.try_private);
        assert_eq!(bridge.keepalive_secs, 60);
        assert_eq!(
            bridge.restart,
            Backoff::Jitter {
                base_secs: 5,
                cap_secs: 30
            }
        );
        assert!(bridge.notifications);
        assert!(!bridge.notifications_local_only);
        assert_eq!(
            bridge.topics,
            [BridgeTopic {
                pattern: "a/#".into(),
                direction: BridgeDirection::Out,
                qos: QoS::AtMostOnce,
                local_prefix: String::new(),
                remote_prefix: String::new(),
            }]
        );
        assert_eq!(config.bridges[0].tls, None);
        assert_eq!(config.bridges[0].defined_at.line, 1);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        // A bridge does not make the configuration listen anywhere else.
        assert!(config.local_only);
    }

    #[test]
    fn every_option_is_parsed() {
        let config = parse(
            "listener 1883
connection cloud
addresses 10.0.0.1:8883 backup.example.com [::1]:1884 fe80::1:1885
round_robin true
remote_clientid edge-7
local_clientid edge-7-local
remote_username bridge user
remote_password p4ss word
cleansession true
local_cleansession false
bridge_protocol_version mqttv50
try_private false
keepalive_interval 30
restart_timeout 10 120
notifications false
notifications_local_only true
notification_topic status/edge-7
start_type automatic
idle_timeout 60
threshold 10
bridge_attempt_unsubscribe true
bridge_outgoing_retain true
bridge_max_packet_size 0
bridge_require_ocsp false
topic sensors/# out 1
bridge_cafile /etc/ca.pem
bridge_capath /etc/certs
bridge_certfile /etc/client.pem
bridge_keyfile /etc/client.key
bridge_insecure false
bridge_tls_version tlsv1.3
bridge_alpn mqtt
",
        );
        let bridge = only_bridge(&config);
        let hosts: Vec<(&str, u16)> = bridge
            .addresses
            .iter()
            .map(|a| (a.host.as_str(), a.port))
            .collect();
        assert_eq!(
            hosts,
            [
                ("10.0.0.1", 8883),
                ("backup.example.com", 1883),
                ("::1", 1884),
                ("fe80::1", 1885)
            ]
        );
        assert!(bridge.round_robin);
        assert_eq!(bridge.remote_clientid, "edge-7");
        assert_eq!(bridge.local_clientid, "edge-7-local");
        assert_eq!(bridge.remote_username.as_deref(), Some("bridge user"));
        assert_eq!(bridge.remote_password.as_deref(), Some(&b"p4ss word"[..]));
        assert!(bridge.clean_session);
        assert!(!bridge.local_clean_session);
        assert_eq!(bridge.protocol, ProtocolVersion::V5);
        assert!(!bridge.try_private);
        assert_eq!(bridge.keepalive_secs, 30);
        assert_eq!(
            bridge.restart,
            Backoff::Jitter {
                base_secs: 10,
                cap_secs: 120
            }
        );
        assert!(!bridge.notifications);
        assert!(bridge.notifications_local_only);
        assert_eq!(bridge.notification_topic, "status/edge-7");
        assert_eq!(bridge.topics.len(), 1);
        let at = |line| Location {
            file: PathBuf::from(ORIGIN),
            line,
        };
        assert_eq!(
            config.bridges[0],
            BridgeLink {
                name: "cloud".into(),
                defined_at: at(2),
                tls: Some(BridgeTls {
                    cafile: Some(FileAt {
                        path: "/etc/ca.pem".into(),
                        at: at(26)
                    }),
                    capath: Some(FileAt {
                        path: "/etc/certs".into(),
                        at: at(27)
                    }),
                    certfile: Some(FileAt {
                        path: "/etc/client.pem".into(),
                        at: at(28)
                    }),
                    keyfile: Some(FileAt {
                        path: "/etc/client.key".into(),
                        at: at(29)
                    }),
                    insecure: false,
                    version: TlsVersion::Tlsv1_3,
                    alpn: Some("mqtt".into()),
                })
            }
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn old_option_names_and_dependent_defaults() {
        let config = parse(
            "connection b\naddress h\ntopic t\nclientid edge\nusername u\npassword p\n\
             cleansession true\nrestart_timeout 20\n",
        );
        let bridge = only_bridge(&config);
        assert_eq!(bridge.remote_clientid, "edge");
        assert_eq!(bridge.local_clientid, "local.edge");
        assert_eq!(
            bridge.notification_topic,
            "$SYS/broker/connection/edge/state"
        );
        assert_eq!(bridge.remote_username.as_deref(), Some("u"));
        assert_eq!(bridge.remote_password.as_deref(), Some(&b"p"[..]));
        // local_cleansession follows cleansession unless set.
        assert!(bridge.local_clean_session);
        assert_eq!(bridge.restart, Backoff::Constant { secs: 20 });
    }

    /// The remapping table of mosquitto.conf(5), row by row, and the optional fields.
    #[test]
    fn topic_lines() {
        let t = |pattern: &str, direction, qos, local: &str, remote: &str| BridgeTopic {
            pattern: pattern.into(),
            direction,
            qos,
            local_prefix: local.into(),
            remote_prefix: remote.into(),
        };
        use BridgeDirection::{Both, In, Out};
        use QoS::{AtLeastOnce, AtMostOnce, ExactlyOnce};
        assert_eq!(topic("a/b"), t("a/b", Out, AtMostOnce, "", ""));
        assert_eq!(topic("# in"), t("#", In, AtMostOnce, "", ""));
        assert_eq!(topic("# BOTH 2"), t("#", Both, ExactlyOnce, "", ""));
        assert_eq!(
            topic("pattern out 1 L/ R/"),
            t("pattern", Out, AtLeastOnce, "L/", "R/")
        );
        assert_eq!(
            topic("pattern in 0 L/ \"\""),
            t("pattern", In, AtMostOnce, "L/", "")
        );
        assert_eq!(
            topic("pattern in 0 \"\" R/"),
            t("pattern", In, AtMostOnce, "", "R/")
        );
        assert_eq!(
            topic("pattern both 0 \"\" \"\""),
            t("pattern", Both, AtMostOnce, "", "")
        );
        assert_eq!(
            topic("\"\" out 1 local remote"),
            t("", Out, AtLeastOnce, "local", "remote")
        );
        // Mosquitto reads a lone local prefix as an empty remote one.
        assert_eq!(topic("x out 0 a/"), t("x", Out, AtMostOnce, "a/", ""));
        assert_eq!(
            topic("clients/total in 0 test/mosquitto/org/ $SYS/broker/"),
            t(
                "clients/total",
                In,
                AtMostOnce,
                "test/mosquitto/org/",
                "$SYS/broker/"
            )
        );
        // A word starting with # after the pattern starts a comment.
        assert_eq!(
            topic("x/+ in 1 # comment"),
            t("x/+", In, AtLeastOnce, "", "")
        );
        assert_eq!(topic("x out #1"), t("x", Out, AtMostOnce, "", ""));
    }

    #[test]
    fn errors_have_the_line_at_fault() {
        let cases: &[(&str, usize, &str)] = &[
            ("connection\n", 1, "connection needs a value"),
            (
                "connection a\naddress h\ntopic t\nconnection a\naddress h\ntopic t\n",
                4,
                "already defined at /etc/mosquitto/mosquitto.conf:1",
            ),
            ("connection a\ntopic t\n", 1, "has no address"),
            ("connection a\naddress h\n", 1, "has no topic line"),
            (
                "connection a\naddress h:1\naddress h:2\ntopic t\n",
                3,
                "already set at",
            ),
            ("connection a\naddress\ntopic t\n", 2, "needs a value"),
            ("connection a\naddress h:0\ntopic t\n", 2, "1 to 65535"),
            ("connection a\naddress h:99999\ntopic t\n", 2, "1 to 65535"),
            ("connection a\naddress h:x\ntopic t\n", 2, "1 to 65535"),
            ("connection a\naddress :1883\ntopic t\n", 2, "no host"),
            (
                "connection a\naddress ::1\ntopic t\n",
                2,
                "IPv6 address needs a port",
            ),
            ("connection a\naddress [::1\ntopic t\n", 2, "no closing ]"),
            (
                "connection a\naddress [h]:1\ntopic t\n",
                2,
                "not an IPv6 address",
            ),
            ("connection a\naddress h\ntopic\n", 3, "topic needs a value"),
            (
                "connection a\naddress h\ntopic t sideways\n",
                3,
                "direction",
            ),
            ("connection a\naddress h\ntopic t out 3\n", 3, "QoS"),
            ("connection a\naddress h\ntopic t out one\n", 3, "QoS"),
            (
                "connection a\naddress h\ntopic x/# out 0 a/# b/\n",
                3,
                "local prefix \"a/#\"",
            ),
            (
                "connection a\naddress h\ntopic x out 0 a/ b/+\n",
                3,
                "remote prefix",
            ),
            (
                "connection a\naddress h\ntopic \"\" in 0 a \"\"\n",
                3,
                "empty pattern",
            ),
            (
                "connection a\naddress h\ntopic \"\" out 0\n",
                3,
                "empty pattern",
            ),
            (
                "connection a\naddress h\ntopic a#\n",
                3,
                "not a valid filter",
            ),
            (
                "connection a\naddress h\ntopic #/a\n",
                3,
                "not a valid filter",
            ),
            (
                "connection a\naddress h\ntopic x+\n",
                3,
                "not a valid filter",
            ),
            (
                "connection a\naddress h\ntopic x out 0 a b c\n",
                3,
                "more on the line",
            ),
            (
                "connection a\naddress h\ntopic t\nremote_password p\n",
                4,
                "remote_username is not",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_protocol_version mqttv5\n",
                4,
                "mqttv50",
            ),
            (
                "connection a\naddress h\ntopic t\nkeepalive_interval 70000\n",
                4,
                "out of range",
            ),
            (
                "connection a\naddress h\ntopic t\nrestart_timeout 30 10\n",
                4,
                "lower than the base",
            ),
            (
                "connection a\naddress h\ntopic t\nrestart_timeout x\n",
                4,
                "whole number",
            ),
            (
                "connection a\naddress h\ntopic t\ncleansession maybe\n",
                4,
                "true or false",
            ),
            (
                "connection a\naddress h\ntopic t\nremote_clientid\n",
                4,
                "needs a value",
            ),
            (
                "connection a\naddress h\ntopic t\nremote_clientid x\nclientid y\n",
                5,
                "already set at",
            ),
            (
                "connection a\naddress h\ntopic t\nnotification_topic a/+\n",
                4,
                "wildcards",
            ),
            (
                "connection a\naddress h\ntopic t\nstart_type lazy\n",
                4,
                "start_type lazy is not supported",
            ),
            (
                "connection a\naddress h\ntopic t\nstart_type once\n",
                4,
                "start_type once is not supported",
            ),
            (
                "connection a\naddress h\ntopic t\nstart_type manual\n",
                4,
                "not supported",
            ),
            (
                "connection a\naddress h\ntopic t\nstart_type soon\n",
                4,
                "invalid start_type",
            ),
            (
                "connection a\naddress h\ntopic t\nidle_timeout x\n",
                4,
                "whole number",
            ),
            (
                "connection a\naddress h\ntopic t\nlocal_username u\n",
                4,
                "local_username is not supported",
            ),
            (
                "connection a\naddress h\ntopic t\nlocal_password p\n",
                4,
                "local_password is not supported",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_outgoing_retain false\n",
                4,
                "not supported",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_max_packet_size 1000\n",
                4,
                "not supported",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_bind_address 10.0.0.2\n",
                4,
                "not supported",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_identity me\n",
                4,
                "TLS-PSK",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_psk 00ff\n",
                4,
                "TLS-PSK",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_require_ocsp true\n",
                4,
                "OCSP",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_receive_maximum 10\n",
                4,
                "is not supported",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_certfile /c.pem\nbridge_keyfile /k\n",
                4,
                "neither bridge_cafile nor bridge_capath",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_insecure true\n",
                4,
                "neither bridge_cafile nor bridge_capath",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_alpn mqtt\n",
                4,
                "neither bridge_cafile nor bridge_capath",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_cafile /ca\nbridge_certfile /c\n",
                5,
                "bridge_keyfile is not",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_cafile /ca\nbridge_keyfile /k\n",
                5,
                "bridge_certfile is not",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_cafile /ca\nbridge_cafile /cb\n",
                5,
                "already set",
            ),
            (
                "connection a\naddress h\ntopic t\nbridge_tls_version sslv3\n",
                4,
                "invalid bridge_tls_version",
            ),
            (
                "connection a\naddress h\ntopic t\nremote_clientid x\n\
                 connection b\naddress h\ntopic t\nlocal_clientid local.x\n",
                5,
                "local_clientid \"local.x\" of bridge \"a\"",
            ),
        ];
        for &(text, line, needle) in cases {
            let error = parse_error(text);
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.message.contains(needle), "{text:?}: {error}");
        }
    }

    #[test]
    fn values_mosquitto_raises_warn() {
        let config = parse(
            "connection a\naddress h\ntopic t\nkeepalive_interval 2\nrestart_timeout 0\n\
             bridge_attempt_unsubscribe false\nbridge_cafile /ca\nbridge_insecure true\n\
             bridge_tls_version tlsv1.1\n",
        );
        let bridge = only_bridge(&config);
        assert_eq!(bridge.keepalive_secs, 5);
        assert_eq!(bridge.restart, Backoff::Constant { secs: 1 });
        let tls = config.bridges[0].tls.as_ref().expect("TLS");
        assert!(tls.insecure);
        assert_eq!(tls.version, TlsVersion::Tlsv1_2);
        let lines: Vec<usize> = config.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [4, 5, 6, 8, 9], "{:?}", config.warnings);
    }

    /// A `listener` line does not end a bridge; another file does, and a bridge option there
    /// before its own `connection` is an error, as in Mosquitto.
    #[test]
    fn a_bridge_lasts_to_the_next_connection_in_its_file() {
        let config = parse(
            "connection a\naddress h\ntopic t\nlistener 1883\nallow_anonymous true\n\
             keepalive_interval 30\nconnection b\naddress h2\ntopic u\n",
        );
        assert_eq!(config.broker.bridges.len(), 2);
        assert_eq!(config.broker.bridges[0].keepalive_secs, 30);
        assert_eq!(config.broker.bridges[1].keepalive_secs, 60);
        assert_eq!(config.broker.bridges[1].name, "b");
        assert_eq!(config.bridges[1].name, "b");
        assert_eq!(config.listeners.len(), 1);

        let dir = tempfile::tempdir().unwrap();
        let conf_d = dir.path().join("conf.d");
        std::fs::create_dir(&conf_d).unwrap();
        std::fs::write(conf_d.join("b.conf"), "keepalive_interval 30\n").unwrap();
        let main = dir.path().join("main.conf");
        std::fs::write(
            &main,
            format!(
                "connection a\naddress h\ntopic t\ninclude_dir {}\n",
                conf_d.display()
            ),
        )
        .unwrap();
        let error = super::super::load(&main).expect_err("bridge option in another file");
        assert_eq!(error.file, conf_d.join("b.conf"));
        assert_eq!(error.line, 1);
        assert!(
            error.message.contains("must follow a connection line"),
            "{error}"
        );
    }
}
