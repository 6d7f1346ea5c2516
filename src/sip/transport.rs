//! `SipTransport`: UDP and TCP on one port (RFC 3261 §18), owned by one arbiter.
//!
//! Datagrams and TCP frames are parsed here, at the edge, and handed to the presence shard
//! that owns the message — the presentity's for requests, the sending shard's for responses
//! (its index is part of every branch it creates) — so a message crosses one thread at most.
//! Requests that cannot be parsed are answered here, statelessly, with the precise `400`,
//! `405`, `505` or `513` the parser chose (RFC 3261 §8.2, §21.4). TCP connections are framed by
//! Content-Length, answer CRLF keep-alives (RFC 5626 §4.4.1), are capped by
//! `limits.max_sip_connections`, and are reused for requests we send to the same peer
//! (RFC 3261 §18.1.1); a request to a peer without a connection opens one.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, trace, warn};

use super::framing::{Frame, FrameError, StreamDecoder};
use super::message::{self, Limits, Message, Rejection};

/// Messages queued towards one TCP connection before further ones are dropped (the
/// transaction layer retransmits or times out; nothing blocks a shard).
const TCP_QUEUE: usize = 1024;

/// Where a message goes, or came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A UDP address.
    Udp(SocketAddr),
    /// The remote address of a TCP connection (opened on demand when absent).
    Tcp(SocketAddr),
}

impl Peer {
    /// "UDP" or "TCP", as in a Via header.
    pub fn transport(&self) -> &'static str {
        match self {
            Peer::Udp(_) => "UDP",
            Peer::Tcp(_) => "TCP",
        }
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Peer::Udp(a) | Peer::Tcp(a) => *a,
        }
    }

    /// Whether the transport is reliable (RFC 3261 §17: no retransmissions over TCP).
    pub fn reliable(&self) -> bool {
        matches!(self, Peer::Tcp(_))
    }

    /// Rebuilds a peer from its stored form (`transport`, `addr`).
    pub fn from_parts(transport: &str, addr: &str) -> Option<Peer> {
        let addr: SocketAddr = addr.parse().ok()?;
        match transport.to_ascii_uppercase().as_str() {
            "UDP" => Some(Peer::Udp(addr)),
            "TCP" => Some(Peer::Tcp(addr)),
            _ => None,
        }
    }
}

/// A parsed message and where it came from, for the shard that owns it.
pub struct Incoming {
    /// The message (requests already stamped with `received`/`rport`).
    pub message: Message,
    /// The peer it came from (responses to requests go back there over TCP).
    pub peer: Peer,
}

/// Where the transport hands parsed messages.
pub trait Dispatch: Send + Sync + 'static {
    /// Takes one message; must not block.
    fn dispatch(&self, incoming: Incoming);
}

struct Inner {
    udp: UdpSocket,
    local: SocketAddr,
    tcp: Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>,
    connections: AtomicUsize,
    max_connections: usize,
    limits: Limits,
    idle_timeout: Duration,
    arbiter: ArbiterHandle,
    dispatch: Arc<dyn Dispatch>,
}

/// Cheap handle to send SIP messages from any thread.
#[derive(Clone)]
pub struct SipSender {
    inner: Arc<Inner>,
}

impl SipSender {
    /// The address the node listens on (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Sends `bytes` to `peer`; false when it could not be queued (the caller's transaction
    /// retransmits or times out).
    pub fn send(&self, peer: Peer, bytes: Bytes) -> bool {
        trace!(%peer, len = bytes.len(), "sip out");
        match peer {
            Peer::Udp(addr) => match self.inner.udp.send_to(&bytes, addr) {
                Ok(_) => true,
                Err(e) => {
                    debug!(%addr, error = %e, "udp send failed");
                    false
                }
            },
            Peer::Tcp(addr) => {
                let existing = self
                    .inner
                    .tcp
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&addr)
                    .cloned();
                match existing {
                    Some(tx) => tx.try_send(bytes).is_ok(),
                    None => {
                        let inner = self.inner.clone();
                        self.inner.arbiter.spawn(async move {
                            connect(inner, addr, bytes).await;
                        })
                    }
                }
            }
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}",
            self.transport().to_ascii_lowercase(),
            self.addr()
        )
    }
}

/// Settings of the transport.
pub struct TransportSettings {
    /// `limits.max_sip_message_bytes`.
    pub max_message_bytes: usize,
    /// `limits.max_sip_connections`.
    pub max_connections: usize,
    /// `limits.sip_udp_receive_buffer_bytes`.
    pub udp_receive_buffer_bytes: usize,
    /// `limits.idle_timeout_ms`: a silent TCP connection is closed after this.
    pub idle_timeout: Duration,
}

/// Asks for a kernel receive buffer of `bytes` on the UDP socket: `SO_RCVBUFFORCE` first
/// (root may pass `net.core.rmem_max`), else `SO_RCVBUF` (capped by it). Logs what it got.
fn set_receive_buffer(udp: &UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let fd = udp.as_raw_fd();
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |opt: libc::c_int| {
        // SAFETY: a valid socket fd and a c_int option value of the size passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&want as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    if !set(libc::SO_RCVBUFFORCE) && !set(libc::SO_RCVBUF) {
        warn!(bytes, error = %std::io::Error::last_os_error(), "SIP UDP receive buffer not set");
        return;
    }
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: as above, with room for the c_int the kernel writes back.
    let ok = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut len,
        ) == 0
    };
    if ok {
        // Linux reports twice the size asked (its bookkeeping overhead included).
        debug!(asked = bytes, kernel = got, "SIP UDP receive buffer");
    }
}

/// How often a system-chosen TCP port is tried again when its UDP twin is taken.
const PORT_PAIR_ATTEMPTS: usize = 32;

/// Binds a TCP listener and a UDP socket on the same port. With port 0 the system picks the
/// TCP port; the same UDP port may already belong to another socket (a client's ephemeral
/// port), so another TCP port is tried then, up to [`PORT_PAIR_ATTEMPTS`] times.
fn bind_pair(addr: SocketAddr) -> std::io::Result<(std::net::TcpListener, UdpSocket, SocketAddr)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tcp = std::net::TcpListener::bind(addr)?;
        let local = tcp.local_addr()?;
        match UdpSocket::bind(local) {
            Ok(udp) => return Ok((tcp, udp, local)),
            Err(e)
                if addr.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < PORT_PAIR_ATTEMPTS =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
}

/// Binds UDP and TCP on `addr` (the same port for both; port 0 picks one) and starts serving
/// on `arbiter`.
pub fn start(
    addr: SocketAddr,
    settings: TransportSettings,
    arbiter: ArbiterHandle,
    dispatch: Arc<dyn Dispatch>,
) -> std::io::Result<SipSender> {
    let (tcp, udp, local) = bind_pair(addr)?;
    set_receive_buffer(&udp, settings.udp_receive_buffer_bytes);
    tcp.set_nonblocking(true)?;
    udp.set_nonblocking(true)?;
    let recv = udp.try_clone()?;
    let inner = Arc::new(Inner {
        udp,
        local,
        tcp: Mutex::new(HashMap::new()),
        connections: AtomicUsize::new(0),
        max_connections: settings.max_connections,
        limits: Limits {
            max_message_bytes: settings.max_message_bytes,
        },
        idle_timeout: settings.idle_timeout,
        arbiter: arbiter.clone(),
        dispatch,
    });
    let (i1, i2) = (inner.clone(), inner.clone());
    arbiter.spawn(async move {
        match tokio::net::UdpSocket::from_std(recv) {
            Ok(sock) => udp_loop(i1, sock).await,
            Err(e) => warn!(error = %e, "cannot serve SIP over UDP"),
        }
    });
    arbiter.spawn(async move {
        match tokio::net::TcpListener::from_std(tcp) {
            Ok(l) => accept_loop(i2, l).await,
            Err(e) => warn!(error = %e, "cannot serve SIP over TCP"),
        }
    });
    info!(sip = %local, "SIP listening on UDP and TCP");
    Ok(SipSender { inner })
}

async fn udp_loop(inner: Arc<Inner>, sock: tokio::net::UdpSocket) {
    // One byte more than the cap, so an oversized datagram is seen as such.
    let mut buf = vec![0u8; inner.limits.max_message_bytes + 1];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP port unreachable shows up here on some systems; keep serving.
                debug!(error = %e, "udp recv failed");
                continue;
            }
        };
        let data = &buf[..n];
        if data.iter().all(|b| matches!(b, b'\r' | b'\n' | b' ' | 0)) {
            continue; // keep-alive noise (RFC 5626 §3.5.1 uses STUN; CRLF is common)
        }
        handle_bytes(&inner, data, Peer::Udp(from));
    }
}

/// Parses one message and dispatches it, or answers/drops it as the parser decided.
fn handle_bytes(inner: &Inner, data: &[u8], peer: Peer) {
    trace!(%peer, len = data.len(), "sip in");
    match message::parse(data, &inner.limits) {
        Ok(mut msg) => {
            if let Message::Request(req) = &mut msg {
                req.stamp_source(peer.addr());
            }
            inner.dispatch.dispatch(Incoming { message: msg, peer });
        }
        Err(Rejection::Drop { reason }) => {
            info!(%peer, %reason, "unusable SIP message dropped");
        }
        Err(Rejection::Reply {
            status,
            reason,
            response,
            via,
        }) => {
            info!(%peer, status, %reason, "bad SIP request refused");
            let to = match peer {
                Peer::Tcp(_) => peer,
                Peer::Udp(src) => Peer::Udp(udp_target(&via, src)),
            };
            send_raw(inner, to, response);
        }
    }
}

/// Where a UDP response goes (RFC 3261 §18.2.2, RFC 3581 §4): `received`/`rport` of the top
/// Via when they resolve to an address, else the packet's source.
pub fn udp_target(via: &message::Via, source: SocketAddr) -> SocketAddr {
    let (host, port) = via.response_target();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => source,
    }
}

fn send_raw(inner: &Inner, peer: Peer, bytes: Bytes) {
    match peer {
        Peer::Udp(addr) => {
            let _ = inner.udp.send_to(&bytes, addr);
        }
        Peer::Tcp(addr) => {
            let tx = inner
                .tcp
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&addr)
                .cloned();
            if let Some(tx) = tx {
                let _ = tx.try_send(bytes);
            }
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: tokio::net::TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if inner.connections.load(Ordering::Acquire) >= inner.max_connections {
                    info!(%peer, max = inner.max_connections,
                        "SIP connection refused: limits.max_sip_connections reached");
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                actix_rt::spawn(serve_connection(inner.clone(), stream, peer, None));
            }
            Err(e) => {
                warn!(error = %e, "SIP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Opens a connection for a request we originate, then serves it like an accepted one.
async fn connect(inner: Arc<Inner>, addr: SocketAddr, first: Bytes) {
    if inner.connections.load(Ordering::Acquire) >= inner.max_connections {
        warn!(%addr, "no SIP connection opened: limits.max_sip_connections reached");
        return;
    }
    match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            serve_connection(inner, stream, addr, Some(first)).await;
        }
        Ok(Err(e)) => debug!(%addr, error = %e, "SIP connect failed"),
        Err(_) => debug!(%addr, "SIP connect timed out"),
    }
}

/// Reads frames from one TCP connection and writes what is queued for it.
async fn serve_connection(
    inner: Arc<Inner>,
    stream: TcpStream,
    peer: SocketAddr,
    first: Option<Bytes>,
) {
    inner.connections.fetch_add(1, Ordering::AcqRel);
    let (tx, mut rx) = mpsc::channel::<Bytes>(TCP_QUEUE);
    if let Some(first) = first {
        let _ = tx.try_send(first);
    }
    inner
        .tcp
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(peer, tx.clone());
    debug!(%peer, "SIP TCP connection up");
    let (mut read, mut write) = stream.into_split();
    let writer = actix_rt::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    let mut decoder = StreamDecoder::new(inner.limits.max_message_bytes);
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = match tokio::time::timeout(inner.idle_timeout, read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => {
                debug!(%peer, "idle SIP connection closed");
                break;
            }
        };
        decoder.push(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::KeepAlive)) => {
                    // RFC 5626 §4.4.1: a double CRLF ping gets a single CRLF pong.
                    let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                }
                Ok(Some(Frame::Message(bytes))) => handle_bytes(&inner, &bytes, Peer::Tcp(peer)),
                Err(e) => {
                    let reason = match e {
                        FrameError::TooLarge => "message too large",
                        FrameError::MissingContentLength => "missing Content-Length",
                        FrameError::BadContentLength => "bad Content-Length",
                    };
                    info!(%peer, reason, "SIP TCP framing error; closing the connection");
                    break 'conn;
                }
            }
        }
    }
    {
        let mut map = inner.tcp.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&peer).is_some_and(|t| t.same_channel(&tx)) {
            map.remove(&peer);
        }
    }
    drop(tx);
    let _ = writer.await;
    inner.connections.fetch_sub(1, Ordering::AcqRel);
    debug!(%peer, "SIP TCP connection down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_port_serves_tcp_and_udp_alike() {
        // Hold many UDP ports so that some system-chosen TCP port may collide with one.
        let held: Vec<UdpSocket> = (0..64)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for _ in 0..16 {
            let (tcp, udp, local) = bind_pair("127.0.0.1:0".parse().unwrap()).unwrap();
            assert_eq!(tcp.local_addr().unwrap(), local);
            assert_eq!(udp.local_addr().unwrap(), local);
        }
        drop(held);
    }

    #[test]
    fn a_configured_port_whose_udp_twin_is_taken_is_an_error() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap();
        // The TCP side may be free, but the UDP side is not: no silent fallback.
        let err = bind_pair(port).expect_err("bind refused");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
