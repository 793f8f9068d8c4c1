//! Outbound connections for bridges: what the event loop needs to dial a remote broker without
//! ever blocking. An IP address is connected to at once; a host name is resolved on a resolver
//! thread, which hands the addresses back through the event loop's `Waker`. Connecting is a
//! non-blocking `connect`, finished when the socket turns writable; TLS then runs as the client.

use midge_core::broker::bridge::{BridgeAddress, BridgeId};
use mio::Waker;
use rustls::ClientConfig;
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Instant;

/// Addresses of one resolved name that are tried, in the order the resolver gave them (a
/// name with both IPv6 and IPv4 addresses, like `localhost`, may listen on only one).
const MAX_CANDIDATES: usize = 8;

/// What the event loop needs to dial one bridge.
#[derive(Debug, Clone)]
pub struct BridgeSpec {
    /// The connection name, for the log.
    pub name: String,
    /// The remote broker's addresses, as `Action::Dial` indexes them.
    pub addresses: Vec<BridgeAddress>,
    /// TLS towards the remote, when the bridge has it.
    pub tls: Option<Arc<ClientConfig>>,
}

/// A bridge connection on its way up: TCP connecting, then TLS handshaking. Once the broker
/// has it (`Input::Dialed`), the connection is like any other.
#[derive(Debug)]
pub struct Dialing {
    /// `host:port` as configured, for the log.
    pub target: String,
    /// The name TLS checks the remote's certificate against: the configured host.
    pub host: String,
    /// The TCP connect has not finished yet.
    pub connecting: bool,
    /// The address being connected to.
    pub addr: SocketAddr,
    /// Addresses left to try if this one fails.
    pub fallback: VecDeque<SocketAddr>,
    /// When dialing began: the whole dial, every address and TLS included, has the
    /// handshake timeout.
    pub started: Instant,
    /// Why the last attempt failed, for the log.
    pub error: Option<String>,
}

/// A host name waiting for the resolver.
#[derive(Debug)]
pub struct Lookup {
    pub id: u64,
    pub bridge: BridgeId,
    pub host: String,
    pub port: u16,
    pub started: Instant,
}

/// The addresses a name resolved to, or why it did not.
#[derive(Debug)]
pub struct Resolved {
    pub id: u64,
    pub result: Result<VecDeque<SocketAddr>, String>,
}

/// A thread that resolves host names, so that a slow DNS server never stalls the event loop.
/// Requests are few (one per dial of a bridge named by host name); the thread ends when the
/// resolver is dropped.
#[derive(Debug)]
pub struct Resolver {
    requests: Sender<(u64, String, u16)>,
    results: Receiver<Resolved>,
    /// Lookups sent and not answered yet; bounded by the caller.
    pub outstanding: usize,
}

impl Resolver {
    /// Starts the thread; `waker` wakes the event loop when an answer is ready.
    pub fn start(waker: Arc<Waker>) -> io::Result<Resolver> {
        let (requests, inbox) = mpsc::channel::<(u64, String, u16)>();
        let (outbox, results) = mpsc::channel();
        std::thread::Builder::new()
            .name("midge-resolver".to_owned())
            .spawn(move || {
                for (id, host, port) in inbox {
                    let result = (host.as_str(), port)
                        .to_socket_addrs()
                        .map(|addrs| addrs.take(MAX_CANDIDATES).collect::<VecDeque<_>>())
                        .map_err(|e| e.to_string())
                        .and_then(|addrs| {
                            if addrs.is_empty() {
                                Err("the name has no address".to_owned())
                            } else {
                                Ok(addrs)
                            }
                        });
                    if outbox.send(Resolved { id, result }).is_err() {
                        return;
                    }
                    if let Err(e) = waker.wake() {
                        tracing::error!("cannot wake the event loop: {e}");
                    }
                }
            })?;
        Ok(Resolver {
            requests,
            results,
            outstanding: 0,
        })
    }

    /// Asks for `host`'s addresses; the answer comes back through [`Resolver::answers`].
    pub fn resolve(&mut self, id: u64, host: &str, port: u16) -> bool {
        let sent = self.requests.send((id, host.to_owned(), port)).is_ok();
        if sent {
            self.outstanding += 1;
        }
        sent
    }

    /// The answers ready now.
    pub fn answers(&mut self) -> Vec<Resolved> {
        let answers: Vec<Resolved> = self.results.try_iter().collect();
        self.outstanding = self.outstanding.saturating_sub(answers.len());
        answers
    }
}

/// The address of an IP literal, which needs no resolver.
pub fn literal(address: &BridgeAddress) -> Option<SocketAddr> {
    address
        .host
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, address.port))
}

/// `host:port`, with brackets around an IPv6 host.
pub fn display(address: &BridgeAddress) -> String {
    if address.host.contains(':') {
        format!("[{}]:{}", address.host, address.port)
    } else {
        format!("{}:{}", address.host, address.port)
    }
}

/// Whether a connecting socket is connected, still connecting, or failed: after the event that
/// woke it, `take_error` holds a failure; a socket without one is connected once it has a peer.
pub fn connect_outcome(stream: &mio::net::TcpStream) -> Result<bool, io::Error> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Interest, Poll, Token};
    use std::time::Duration;

    fn address(host: &str, port: u16) -> BridgeAddress {
        BridgeAddress {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn ip_literals_need_no_resolver() {
        assert_eq!(
            literal(&address("127.0.0.1", 1883)),
            Some("127.0.0.1:1883".parse().unwrap())
        );
        assert_eq!(
            literal(&address("::1", 8883)),
            Some("[::1]:8883".parse().unwrap())
        );
        assert_eq!(literal(&address("localhost", 1883)), None);
        assert_eq!(display(&address("::1", 8883)), "[::1]:8883");
        assert_eq!(display(&address("broker", 1883)), "broker:1883");
    }

    /// Waits for the socket's next event and reads the connect's outcome.
    fn outcome_after_event(stream: &mut mio::net::TcpStream) -> Result<bool, io::Error> {
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(stream, Token(0), Interest::WRITABLE | Interest::READABLE)
            .unwrap();
        let mut events = Events::with_capacity(4);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            match connect_outcome(stream) {
                Ok(false) if Instant::now() < deadline => continue,
                other => return other,
            }
        }
    }

    #[test]
    fn a_connect_to_a_listening_port_completes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut stream = mio::net::TcpStream::connect(addr).unwrap();
        assert!(outcome_after_event(&mut stream).unwrap());
    }

    #[test]
    fn a_connect_to_a_closed_port_fails() {
        // A port that was free a moment ago: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        match mio::net::TcpStream::connect(addr) {
            // Refused at once: the dial fails without waiting for an event.
            Err(_) => {}
            Ok(mut stream) => {
                let error = outcome_after_event(&mut stream).expect_err("refused");
                assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
            }
        }
    }

    #[test]
    fn the_resolver_answers_through_the_waker() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let mut resolver = Resolver::start(waker).unwrap();
        assert!(resolver.resolve(1, "localhost", 1883));
        assert!(resolver.resolve(2, "name.invalid", 1883));
        assert_eq!(resolver.outstanding, 2);
        let mut answers = Vec::new();
        let mut events = Events::with_capacity(4);
        let deadline = Instant::now() + Duration::from_secs(30);
        while answers.len() < 2 && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_secs(1)))
                .unwrap();
            answers.extend(resolver.answers());
        }
        assert_eq!(answers.len(), 2, "{answers:?}");
        assert_eq!(resolver.outstanding, 0);
        let localhost = answers.iter().find(|a| a.id == 1).unwrap();
        let addrs = localhost.result.as_ref().expect("localhost resolves");
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 1883)
        );
        // RFC 6761: .invalid never resolves.
        assert!(answers.iter().find(|a| a.id == 2).unwrap().result.is_err());
    }
}
