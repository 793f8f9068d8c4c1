//! The byte streams under MQTT: a TCP or Unix socket, optionally inside TLS, optionally carrying
//! WebSocket frames. Every layer is non-blocking: reads and writes report `WouldBlock` when the
//! socket cannot go on, and the event loop retries when mio says it can.

use bytes::Bytes;
use mio::net::TcpStream;
#[cfg(unix)]
use mio::net::UnixStream;
use rustls::{ClientConnection, ConnectionCommon, ServerConnection, StreamOwned};
use std::io::{self, Read, Write};
use tungstenite::handshake::server::{ErrorResponse, Request, Response, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::http::{HeaderValue, StatusCode};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// A socket, with TLS when the listener (or, for a bridge's connection, the bridge) has it.
#[derive(Debug)]
pub enum RawStream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
    /// A bridge's connection to a remote broker: this side is the TLS client.
    TlsClient(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for RawStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            RawStream::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            RawStream::Unix(s) => s.read(buf),
            RawStream::Tls(s) => s.read(buf),
            RawStream::TlsClient(s) => s.read(buf),
        }
    }
}

impl Write for RawStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            RawStream::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            RawStream::Unix(s) => s.write(buf),
            RawStream::Tls(s) => s.write(buf),
            RawStream::TlsClient(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            RawStream::Tcp(s) => s.write_vectored(bufs),
            #[cfg(unix)]
            RawStream::Unix(s) => s.write_vectored(bufs),
            RawStream::Tls(s) => s.write_vectored(bufs),
            RawStream::TlsClient(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            RawStream::Tcp(s) => s.flush(),
            #[cfg(unix)]
            RawStream::Unix(s) => s.flush(),
            RawStream::Tls(s) => write_tls_records(&mut s.conn, &mut s.sock),
            RawStream::TlsClient(s) => write_tls_records(&mut s.conn, &mut s.sock),
        }
    }
}

/// Pushes out the TLS records rustls has buffered.
fn write_tls_records<D>(conn: &mut ConnectionCommon<D>, sock: &mut TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    Ok(())
}

/// Sends TLS close_notify, as far as the socket takes it at once.
fn close_notify<D>(conn: &mut ConnectionCommon<D>, sock: &mut TcpStream) {
    conn.send_close_notify();
    while conn.wants_write() {
        if !matches!(conn.write_tls(sock), Ok(n) if n > 0) {
            break;
        }
    }
}

/// The chunks of output handed to one `writev`.
const MAX_GATHER: usize = 64;

/// Removes the first `n` bytes of `out`, whole chunks and part of the next.
fn consume(out: &mut Vec<Bytes>, mut n: usize) {
    let whole = out
        .iter()
        .take_while(|chunk| {
            let fits = chunk.len() <= n;
            if fits {
                n -= chunk.len();
            }
            fits
        })
        .count();
    out.drain(..whole);
    if n > 0 {
        let _ = out[0].split_to(n);
    }
}

/// Whether a short read or write on a plain socket shows that its kernel buffer was drained or
/// filled: true where mio's selector is edge-triggered (epoll, kqueue), which reports the next
/// arrival or the next room anyway, so the call that would only say `WouldBlock` is saved
/// (tokio does the same). Not under TLS, whose library buffers on its own.
const SHORT_IO_IS_FINAL: bool = cfg!(any(
    target_os = "android",
    target_os = "illumos",
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "ios",
    target_os = "macos",
    target_os = "netbsd",
    target_os = "openbsd",
));

impl RawStream {
    /// A read that returned less than asked emptied the socket, and a write that took less
    /// than offered filled it (see [`SHORT_IO_IS_FINAL`]).
    fn short_io_is_final(&self) -> bool {
        SHORT_IO_IS_FINAL
            && match self {
                RawStream::Tcp(_) => true,
                #[cfg(unix)]
                RawStream::Unix(_) => true,
                RawStream::Tls(_) | RawStream::TlsClient(_) => false,
            }
    }

    /// TLS records or handshake messages are waiting to be written.
    fn has_pending_output(&self) -> bool {
        match self {
            RawStream::Tls(s) => s.conn.wants_write(),
            RawStream::TlsClient(s) => s.conn.wants_write(),
            _ => false,
        }
    }

    /// The identity of a verified TLS client certificate: its subject's Common Name, which is
    /// what Mosquitto's use_identity_as_username takes.
    pub fn peer_identity(&self) -> Option<String> {
        let RawStream::Tls(s) = self else {
            return None;
        };
        let cert = s.conn.peer_certificates()?.first()?;
        crate::tls::common_name(cert)
    }

    /// True once the TLS handshake is over (always true without TLS).
    pub fn handshake_done(&self) -> bool {
        match self {
            RawStream::Tls(s) => !s.conn.is_handshaking(),
            RawStream::TlsClient(s) => !s.conn.is_handshaking(),
            _ => true,
        }
    }
}

type WsCallback = fn(&Request, Response) -> Result<Response, ErrorResponse>;

/// Accepts the WebSocket upgrade only for the MQTT subprotocol, and names it in the answer
/// (MQTT 5.0 and 3.1.1, section 6: "mqtt"; some 3.1 clients ask for "mqttv3.1").
// The signature is tungstenite's callback contract; its error type is its HTTP response.
#[allow(clippy::result_large_err)]
fn ws_callback(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| p.eq_ignore_ascii_case("mqtt") || p.eq_ignore_ascii_case("mqttv3.1"))
        .map(str::to_owned);
    match offered {
        Some(protocol) => {
            let value = HeaderValue::from_str(&protocol).map_err(|_| bad_request())?;
            response
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", value);
            Ok(response)
        }
        None => Err(bad_request()),
    }
}

fn bad_request() -> ErrorResponse {
    let mut r = ErrorResponse::new(Some("WebSocket subprotocol \"mqtt\" required".to_owned()));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

/// A connection's stream in its current state.
#[derive(Debug)]
pub enum Transport {
    /// MQTT directly on the (TLS) socket.
    Raw(RawStream),
    /// An HTTP upgrade to WebSocket in progress.
    WsHandshake(Option<Box<MidHandshake<ServerHandshake<RawStream, WsCallback>>>>),
    /// MQTT inside WebSocket binary messages.
    Ws(Box<WebSocket<RawStream>>),
    /// Failed or finished; nothing more moves.
    Closed,
}

/// What a read turn produced.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// The read budget ran out before the stream would block: come back for more.
    pub more: bool,
    /// The peer closed its side, or the stream failed.
    pub closed: bool,
    /// Why, for the log, when it failed rather than closed cleanly.
    pub error: Option<String>,
}

impl Transport {
    /// A plain MQTT stream.
    pub fn mqtt(stream: RawStream) -> Transport {
        Transport::Raw(stream)
    }

    /// A stream that must first complete a WebSocket upgrade. `max_message` bounds the size of
    /// one WebSocket message and `max_buffer` the bytes waiting to be written.
    pub fn websocket(stream: RawStream, max_message: usize, max_buffer: usize) -> Transport {
        let config = ws_config(max_message, max_buffer);
        let callback: WsCallback = ws_callback;
        match tungstenite::accept_hdr_with_config(stream, callback, Some(config)) {
            Ok(ws) => Transport::Ws(Box::new(ws)),
            Err(HandshakeError::Interrupted(mid)) => Transport::WsHandshake(Some(Box::new(mid))),
            Err(HandshakeError::Failure(_)) => Transport::Closed,
        }
    }

    /// The socket under every layer, for identity and registration.
    pub fn raw(&self) -> Option<&RawStream> {
        match self {
            Transport::Raw(s) => Some(s),
            Transport::WsHandshake(Some(mid)) => Some(mid.get_ref().get_ref()),
            Transport::Ws(ws) => Some(ws.get_ref()),
            Transport::WsHandshake(None) | Transport::Closed => None,
        }
    }

    pub fn raw_mut(&mut self) -> Option<&mut RawStream> {
        match self {
            Transport::Raw(s) => Some(s),
            Transport::WsHandshake(Some(mid)) => Some(mid.get_mut().get_mut()),
            Transport::Ws(ws) => Some(ws.get_mut()),
            Transport::WsHandshake(None) | Transport::Closed => None,
        }
    }

    /// True when MQTT bytes can flow (TLS and WebSocket handshakes done).
    pub fn ready(&self) -> bool {
        match self {
            Transport::Raw(s) => s.handshake_done(),
            Transport::Ws(_) => true,
            _ => false,
        }
    }

    /// Reads everything available, handing MQTT bytes to `sink`, until the stream would block.
    /// `budget` bounds the bytes taken in one turn, so one busy client cannot starve the others;
    /// the event loop comes back for the rest. `to_the_end`: the peer shut its side down, so
    /// reading goes on until the end of the stream shows (a short read proves nothing then).
    pub fn read(
        &mut self,
        scratch: &mut [u8],
        budget: usize,
        to_the_end: bool,
        mut sink: impl FnMut(&[u8]),
    ) -> ReadOutcome {
        let mut taken = 0;
        loop {
            if taken >= budget {
                return ReadOutcome {
                    more: true,
                    ..ReadOutcome::default()
                };
            }
            match self {
                Transport::Raw(s) => match s.read(scratch) {
                    Ok(0) => return closed(None),
                    Ok(n) => {
                        taken += n;
                        sink(&scratch[..n]);
                        if n < scratch.len() && !to_the_end && s.short_io_is_final() {
                            return ReadOutcome::default();
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return ReadOutcome::default();
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return closed(Some(e.to_string())),
                },
                Transport::WsHandshake(slot) => {
                    let Some(mid) = slot.take() else {
                        return closed(None);
                    };
                    match mid.handshake() {
                        Ok(ws) => *self = Transport::Ws(Box::new(ws)),
                        Err(HandshakeError::Interrupted(mid)) => {
                            *slot = Some(Box::new(mid));
                            return ReadOutcome::default();
                        }
                        Err(HandshakeError::Failure(e)) => {
                            *self = Transport::Closed;
                            return closed(Some(format!("WebSocket handshake: {e}")));
                        }
                    }
                }
                Transport::Ws(ws) => match ws.read() {
                    Ok(Message::Binary(data)) => {
                        taken += data.len();
                        sink(&data);
                    }
                    // MQTT over WebSocket uses binary messages only (5.0 and 3.1.1, 6.0).
                    Ok(Message::Text(_)) => {
                        return closed(Some("text WebSocket message".to_owned()));
                    }
                    Ok(Message::Close(_)) => return closed(None),
                    // Pings are answered by tungstenite itself on the next write or flush.
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        return ReadOutcome::default();
                    }
                    Err(
                        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                    ) => {
                        return closed(None);
                    }
                    Err(e) => return closed(Some(format!("WebSocket: {e}"))),
                },
                Transport::Closed => return closed(None),
            }
        }
    }

    /// Writes as much of `out` as the stream takes, removing what was written. Returns whether
    /// anything (of `out` or of a lower layer's buffer) is still waiting.
    pub fn write(&mut self, out: &mut Vec<Bytes>) -> io::Result<bool> {
        match self {
            Transport::Raw(s) => {
                while !out.is_empty() {
                    // One system call for everything the turn produced (gathered).
                    let mut slices = [io::IoSlice::new(&[]); MAX_GATHER];
                    let count = out.len().min(MAX_GATHER);
                    for (slice, chunk) in slices.iter_mut().zip(out.iter()) {
                        *slice = io::IoSlice::new(chunk);
                    }
                    let offered: usize = out[..count].iter().map(Bytes::len).sum();
                    match s.write_vectored(&slices[..count]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            consume(out, n);
                            if n < offered && s.short_io_is_final() {
                                // The socket's buffer is full: writable readiness comes back
                                // when it drains, so asking again would only meet WouldBlock.
                                return Ok(true);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                match s.flush() {
                    Ok(()) => Ok(s.has_pending_output()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
                    Err(e) => Err(e),
                }
            }
            Transport::Ws(ws) => {
                // Each chunk the broker handed over becomes one binary message; tungstenite
                // buffers frames (up to its limit) and flushes what the socket takes.
                for chunk in out.drain(..) {
                    match ws.write(Message::Binary(chunk)) {
                        Ok(()) => {}
                        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        }
                        Err(e) => return Err(io::Error::other(e)),
                    }
                }
                match ws.flush() {
                    Ok(()) => Ok(ws.get_ref().has_pending_output()),
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        Ok(true)
                    }
                    Err(e) => Err(io::Error::other(e)),
                }
            }
            Transport::WsHandshake(Some(_)) => Ok(!out.is_empty()),
            Transport::WsHandshake(None) | Transport::Closed => {
                Err(io::ErrorKind::NotConnected.into())
            }
        }
    }

    /// Ends the stream as politely as the socket allows without blocking, before it is dropped:
    /// a WebSocket Close frame (RFC 6455, 7.1.1: the closing handshake comes before the TCP
    /// close; clients report a connection closed without it as an error), then TLS
    /// close_notify. Whatever the socket does not take at once is abandoned.
    pub fn close(&mut self) {
        if let Transport::Ws(ws) = self {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
        match self.raw_mut() {
            Some(RawStream::Tls(s)) => close_notify(&mut s.conn, &mut s.sock),
            Some(RawStream::TlsClient(s)) => close_notify(&mut s.conn, &mut s.sock),
            _ => {}
        }
        *self = Transport::Closed;
    }

    /// Flushes what lower layers hold (TLS handshake messages, a WebSocket handshake answer).
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Transport::WsHandshake(slot) => {
                // Driving the handshake writes its HTTP answer when it is ready.
                let Some(mid) = slot.take() else {
                    return Ok(false);
                };
                match mid.handshake() {
                    Ok(ws) => {
                        *self = Transport::Ws(Box::new(ws));
                        Ok(false)
                    }
                    Err(HandshakeError::Interrupted(mid)) => {
                        *slot = Some(Box::new(mid));
                        Ok(true)
                    }
                    Err(HandshakeError::Failure(e)) => {
                        *self = Transport::Closed;
                        Err(io::Error::other(e))
                    }
                }
            }
            _ => self.write(&mut Vec::new()),
        }
    }
}

fn closed(error: Option<String>) -> ReadOutcome {
    ReadOutcome {
        more: false,
        closed: true,
        error,
    }
}

fn ws_config(max_message: usize, max_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
        .write_buffer_size(0)
        .max_write_buffer_size(max_buffer)
}

#[cfg(test)]
mod tests {
    use super::consume;
    use bytes::Bytes;

    fn chunks(parts: &[&'static str]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|p| Bytes::from_static(p.as_bytes()))
            .collect()
    }

    #[test]
    fn consume_takes_whole_chunks_then_part_of_the_next() {
        let mut out = chunks(&["abc", "de", "fgh"]);
        consume(&mut out, 4);
        assert_eq!(out, chunks(&["e", "fgh"]));
        consume(&mut out, 1);
        assert_eq!(out, chunks(&["fgh"]));
        consume(&mut out, 0);
        assert_eq!(out, chunks(&["fgh"]));
        consume(&mut out, 3);
        assert!(out.is_empty());
    }

    #[test]
    fn consume_of_exactly_the_first_chunks_leaves_the_rest_whole() {
        let mut out = chunks(&["ab", "cd", "ef"]);
        consume(&mut out, 4);
        assert_eq!(out, chunks(&["ef"]));
    }
}
