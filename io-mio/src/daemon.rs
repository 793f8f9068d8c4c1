//! From a configuration to a running daemon: listener sockets with their TLS settings, the
//! bridges' TLS settings, the broker's configuration, process limits and the pid file.
//! [`Assembly`] puts them together; the `midge` binary and the conformance suite's daemon both
//! go through it, so the broker a test talks to is built as the one that is deployed.

use crate::access::FileAuthorizer;
use crate::clock::Clock;
use crate::config::{
    BridgeTls, DaemonConfig, ListenerConfig, ListenerProtocol, SocketDomain, TlsVersion,
};
use crate::server::{BridgeSpec, IoLimits, ListenAddr, ListenerSpec, Server};
use crate::tls;
use midge_core::auth::{Authenticator, Authorizer};
use midge_core::broker::{Broker, Config, ListenerId};
use midge_core::codec::QoS;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// What a configuration asks of the event loop, read and checked before anything listens:
/// the sockets to bind, the bridges to dial, and the password and ACL files.
#[derive(Debug)]
pub struct Assembly {
    listeners: Vec<ListenerSpec>,
    bridges: Vec<BridgeSpec>,
    authorizer: FileAuthorizer,
}

impl Assembly {
    /// Everything that can be wrong with `config` (an address that does not resolve, a TLS,
    /// password or ACL file that cannot be read) is found here.
    pub fn new(config: &DaemonConfig) -> Result<Assembly, String> {
        Ok(Assembly {
            listeners: listener_specs(config)?,
            bridges: bridge_specs(config)?,
            authorizer: FileAuthorizer::load(config)?,
        })
    }

    /// Binds the listeners around `broker` (new or recovered, from [`broker_config`]) with the
    /// files' authenticator and authorizer, and hands the event loop the bridges to dial: the
    /// broker asks for them at its start, and they are dialed once the loop runs.
    pub fn bind(self, mut broker: Broker, clock: Clock) -> Result<Server, String> {
        broker.set_authenticator(Box::new(self.authorizer.authenticator()?));
        broker.set_authorizer(Box::new(self.authorizer));
        let mut server = Server::bind(self.listeners, broker, IoLimits::default(), clock)
            .map_err(|e| e.to_string())?;
        server.set_bridges(self.bridges);
        Ok(server)
    }
}

/// What a reload (SIGHUP) replaces: who may connect and do what, and how they authenticate.
pub type Access = (Box<dyn Authorizer>, Box<dyn Authenticator>);

/// The [`Access`] of the password and ACL files as they are now, for a reload.
pub fn reload_access(config: &DaemonConfig) -> Result<Access, String> {
    let authorizer = FileAuthorizer::load(config)?;
    let authenticator = authorizer.authenticator()?;
    Ok((Box::new(authorizer), Box::new(authenticator)))
}

/// The broker's configuration, with each listener's `max_qos` and a client id seed from the
/// operating system so assigned client ids cannot be guessed.
pub fn broker_config(config: &DaemonConfig) -> Result<Config, String> {
    let mut broker = config.broker.clone();
    broker.listener_max_qos = config
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, listener)| listener.max_qos < QoS::ExactlyOnce)
        .map(|(index, listener)| (listener_id(index), listener.max_qos))
        .collect();
    getrandom::fill(&mut broker.client_id_seed)
        .map_err(|e| format!("cannot read random seed: {e}"))?;
    Ok(broker)
}

/// The broker's name for the listener at `index` of the configuration.
fn listener_id(index: usize) -> ListenerId {
    ListenerId(index as u32)
}

/// Every socket to listen on. A listener whose host resolves to several addresses gets one
/// socket per address; they share the listener's id.
pub fn listener_specs(config: &DaemonConfig) -> Result<Vec<ListenerSpec>, String> {
    let mut specs = Vec::new();
    for (index, listener) in config.listeners.iter().enumerate() {
        let id = listener_id(index);
        let tls = match &listener.tls {
            Some(t) => Some(tls::server_config(&tls::Settings {
                certfile: &t.certfile,
                keyfile: &t.keyfile,
                cafile: t.cafile.as_deref(),
                capath: t.capath.as_deref(),
                require_certificate: t.require_certificate,
                versions: match t.tls_version {
                    Some(TlsVersion::Tlsv1_3) => tls::Versions::Tls13,
                    _ => tls::Versions::Default,
                },
            })?),
            None => None,
        };
        for addr in addresses(listener)? {
            specs.push(ListenerSpec {
                id,
                addr,
                tls: tls.clone(),
                websocket: listener.protocol == ListenerProtocol::WebSockets,
                max_connections: listener.max_connections,
            });
        }
    }
    Ok(specs)
}

/// What the event loop needs to dial each bridge, in the order of the broker's bridges: the
/// remote addresses and, with TLS, the client configuration built from files read now, so that
/// a missing or bad file stops the daemon (and `--test-config`) with the line that names it.
pub fn bridge_specs(config: &DaemonConfig) -> Result<Vec<BridgeSpec>, String> {
    config
        .broker
        .bridges
        .iter()
        .zip(&config.bridges)
        .map(|(bridge, link)| {
            let tls = link.tls.as_ref().map(bridge_tls).transpose()?;
            Ok(BridgeSpec {
                name: bridge.name.clone(),
                addresses: bridge.addresses.clone(),
                tls,
            })
        })
        .collect()
}

fn bridge_tls(t: &BridgeTls) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let roots = tls::trust_anchors(
        t.cafile.as_ref().map(|f| f.path.as_path()),
        t.capath.as_ref().map(|f| f.path.as_path()),
    )
    .map_err(|e| {
        // Point at the option whose files failed; the CA file is the likelier culprit.
        let at = t.cafile.as_ref().or(t.capath.as_ref()).map(|f| &f.at);
        match at {
            Some(at) => format!("{at}: bridge_cafile/bridge_capath: {e}"),
            None => format!("bridge_cafile/bridge_capath: {e}"),
        }
    })?;
    let identity = match (&t.certfile, &t.keyfile) {
        (Some(certfile), Some(keyfile)) => {
            let certs = tls::read_certificates(&certfile.path)
                .map_err(|e| format!("{}: bridge_certfile {e}", certfile.at))?;
            let key = tls::read_private_key(&keyfile.path)
                .map_err(|e| format!("{}: bridge_keyfile {e}", keyfile.at))?;
            Some((certs, key))
        }
        _ => None,
    };
    let at = t
        .certfile
        .as_ref()
        .or(t.cafile.as_ref())
        .or(t.capath.as_ref())
        .map(|f| f.at.to_string())
        .unwrap_or_default();
    tls::client_config(tls::ClientSettings {
        roots,
        identity,
        insecure: t.insecure,
        versions: match t.version {
            TlsVersion::Tlsv1_3 => tls::Versions::Tls13,
            TlsVersion::Tlsv1_2 => tls::Versions::Default,
        },
        alpn: t.alpn.as_ref().map(|a| a.as_bytes().to_vec()),
    })
    .map_err(|e| format!("{at}: {e}"))
}

/// Where one listener listens. Without a bind address it takes every interface: on the IPv6
/// wildcard, which also accepts IPv4 on a dual-stack host, unless `socket_domain` says ipv4.
fn addresses(l: &ListenerConfig) -> Result<Vec<ListenAddr>, String> {
    #[cfg(unix)]
    if let Some(path) = &l.unix_socket {
        return Ok(vec![ListenAddr::Unix(path.clone())]);
    }
    let wanted = |a: &SocketAddr| match l.socket_domain {
        Some(SocketDomain::Ipv4) => a.is_ipv4(),
        Some(SocketDomain::Ipv6) => a.is_ipv6(),
        None => true,
    };
    let addrs: Vec<SocketAddr> = match &l.bind {
        None => match l.socket_domain {
            Some(SocketDomain::Ipv4) => vec![(Ipv4Addr::UNSPECIFIED, l.port).into()],
            _ if ipv6_available() => vec![(Ipv6Addr::UNSPECIFIED, l.port).into()],
            _ => vec![(Ipv4Addr::UNSPECIFIED, l.port).into()],
        },
        Some(host) => {
            let mut found: Vec<SocketAddr> = (host.as_str(), l.port)
                .to_socket_addrs()
                .map_err(|e| format!("listener {l}: cannot resolve {host}: {e}"))?
                .filter(wanted)
                .collect();
            found.sort();
            found.dedup();
            found
        }
    };
    if addrs.is_empty() {
        return Err(format!("listener {l}: no address to listen on"));
    }
    Ok(addrs.into_iter().map(ListenAddr::Tcp).collect())
}

fn ipv6_available() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// Raises the soft limit on open files to the hard limit, so the broker can hold as many
/// connections as the system allows. Windows has no such limit on sockets or files (the C
/// runtime's stdio limit concerns `FILE` streams, which midge does not use).
#[cfg(unix)]
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!("open files limit: {n}"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
}

/// Writes the process id where `pid_file` says.
pub fn write_pid_file(config: &DaemonConfig) -> Result<(), String> {
    if let Some(path) = &config.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("pid_file {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Each listener's `max_qos` reaches the broker under the id its sockets get.
    #[test]
    fn listener_max_qos_reaches_the_broker_by_listener_id() {
        let config = crate::config::parse_str(
            "listener 0 127.0.0.1\nlistener 0 127.0.0.1\nmax_qos 1\n\
             listener 0 127.0.0.1\nmax_qos 0\n",
            Path::new("test.conf"),
        )
        .expect("configuration");
        let broker = broker_config(&config).expect("broker configuration");
        let specs = listener_specs(&config).expect("listeners");
        let ids: Vec<ListenerId> = specs.iter().map(|s| s.id).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(broker.max_qos(ids[0]), QoS::ExactlyOnce);
        assert_eq!(broker.max_qos(ids[1]), QoS::AtLeastOnce);
        assert_eq!(broker.max_qos(ids[2]), QoS::AtMostOnce);
        assert_eq!(broker.listener_max_qos.len(), 2);
    }
}
