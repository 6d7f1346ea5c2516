//! The socket side of one c2s connection: a task that owns the TCP (later TLS) stream, feeds
//! the incremental parser, hands events to its `XmppSession` actor and writes what the
//! session and the presence hub queue in the session's [`Outbox`].
//!
//! Back-pressure (RFC 6120 §13.12 asks servers to protect themselves): the task waits for
//! the session to take each event before reading more, so a fast sender is slowed at the TCP
//! level; the outbox counts queued bytes and a client that lets them pass
//! `limits.send_queue_bytes` is cut off with `policy-violation` at once, without waiting
//! for its socket to drain.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_rustls::TlsAcceptor;

use crate::presence::outbox::Out;
/// The queue a session and the presence hub fill for this connection; presence owns it.
pub use crate::presence::outbox::Outbox;
use crate::xml::XmlError;
use crate::xmpp::stanza::{stream_error_bytes, StreamErrorCondition};
use crate::xmpp::stream::{ParserLimits, StreamEvent, StreamParser};

/// What the connection task tells its session.
#[derive(Message)]
#[rtype(result = "()")]
pub enum FromConnection {
    /// A stream header, stanza or stream close.
    Event(StreamEvent),
    /// The peer sent bad XML; the session answers with the matching stream error.
    Xml(XmlError),
    /// No data for `limits.ping_after_ms`: time to ping the client.
    Idle,
    /// The socket is gone (EOF, error, or closed by us).
    Closed,
}

/// Settings of the connection task, from `[limits]`.
#[derive(Clone)]
pub struct ConnectionSettings {
    /// Parser caps.
    pub max_stanza_bytes: usize,
    /// Parser depth cap.
    pub max_stanza_depth: usize,
    /// Outbox limit.
    pub send_queue_bytes: usize,
    /// Silence before the session is asked to ping.
    pub ping_after: Duration,
    /// Silence before the stream is closed.
    pub idle_timeout: Duration,
    /// How long a stream closed by [`Outbox::close_lingering`] is still read.
    pub close_wait: Duration,
}

/// Decrements the node's connection count when the connection ends.
pub struct ConnectionSlot(pub Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The handle a session gets: its outbox, and the task to spawn once the actor has started.
pub struct Connection {
    /// The session's outbox.
    pub outbox: Outbox,
    settings: ConnectionSettings,
}

impl Connection {
    /// A new connection's outbox and pending task.
    pub fn new(settings: ConnectionSettings) -> Connection {
        let outbox = Outbox::new(settings.send_queue_bytes);
        Connection { outbox, settings }
    }

    /// Runs the socket until it closes, reporting to `session`.
    pub async fn run(
        self,
        stream: TcpStream,
        tls: Option<TlsAcceptor>,
        session: Recipient<FromConnection>,
        slot: ConnectionSlot,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let Connection { outbox, settings } = self;
        let mut io = Io {
            parser: StreamParser::new(ParserLimits {
                max_stanza_bytes: settings.max_stanza_bytes,
                max_depth: settings.max_stanza_depth,
            }),
            outbox,
            settings,
            session: session.clone(),
            shutdown,
            peer_closed: false,
        };
        if let Ending::StartTls(tcp) = io.pump(stream).await {
            match tls {
                // Boxed: inline, the TLS part (a rustls connection and its pump) would make
                // every connection's task as large as a TLS one, plain and idle ones too.
                Some(acceptor) => Box::pin(io.tls(acceptor, tcp)).await,
                None => tracing::warn!("STARTTLS queued without a TLS configuration"),
            }
        }
        io.outbox.mark_closed();
        drop(slot);
        let _ = session.send(FromConnection::Closed).await;
    }
}

enum Ending<S> {
    Closed,
    StartTls(S),
}

struct Io {
    parser: StreamParser,
    outbox: Outbox,
    settings: ConnectionSettings,
    session: Recipient<FromConnection>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// The peer sent its `</stream:stream>`.
    peer_closed: bool,
}

/// The per-thread read buffer: what one read takes from a socket at most.
const READ_CHUNK: usize = 8192;

thread_local! {
    static READ_BUF: std::cell::RefCell<Box<[u8; READ_CHUNK]>> =
        std::cell::RefCell::new(Box::new([0; READ_CHUNK]));
}

/// Reads what the socket has into the thread's buffer and pushes it into the parser at once
/// (the parser keeps its own copy of an unfinished stanza), so a connection waiting for data
/// holds no read buffer of its own. `Ok(None)` at end of stream.
struct ReadInto<'a, S> {
    stream: &'a mut S,
    parser: &'a mut StreamParser,
}

impl<S: AsyncRead + Unpin> std::future::Future for ReadInto<'_, S> {
    type Output = std::io::Result<Option<Result<(), XmlError>>>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        READ_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            let mut rb = tokio::io::ReadBuf::new(&mut buf[..]);
            match std::pin::Pin::new(&mut *this.stream).poll_read(cx, &mut rb) {
                std::task::Poll::Pending => std::task::Poll::Pending,
                std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                std::task::Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    std::task::Poll::Ready(Ok(None))
                }
                std::task::Poll::Ready(Ok(())) => {
                    std::task::Poll::Ready(Ok(Some(this.parser.push(rb.filled()))))
                }
            }
        })
    }
}

/// Largest single write when queued chunks are joined.
const WRITE_BATCH: usize = 64 * 1024;

/// Joins `first` with the plain data chunks already queued behind it (up to
/// [`WRITE_BATCH`]), so a burst costs one syscall; returns the first other item met.
fn coalesce(first: Bytes, outbox: &Outbox) -> (Bytes, Option<Out>) {
    let mut batch: Option<Vec<u8>> = None;
    let mut len = first.len();
    while len < WRITE_BATCH {
        match outbox.pop() {
            Some(Out::Data {
                bytes,
                reset: false,
            }) => {
                let b = batch.get_or_insert_with(|| {
                    let mut v = Vec::with_capacity(WRITE_BATCH.min(len + bytes.len() * 4));
                    v.extend_from_slice(&first);
                    v
                });
                b.extend_from_slice(&bytes);
                len += bytes.len();
            }
            Some(other) => return (batch.map_or(first, Bytes::from), Some(other)),
            None => break,
        }
    }
    (batch.map_or(first, Bytes::from), None)
}

impl Io {
    /// The TLS handshake after `<proceed/>` (RFC 6120 §5.4.3.3), then the stream over TLS.
    async fn tls(&mut self, acceptor: TlsAcceptor, tcp: TcpStream) {
        match timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
            Ok(Ok(tls_stream)) => {
                self.parser.reset();
                tracing::debug!("TLS established");
                self.pump(tls_stream).await;
            }
            Ok(Err(e)) => tracing::info!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::info!("TLS handshake timed out"),
        }
    }

    /// Reads and writes `stream` until it closes or STARTTLS takes it over.
    async fn pump<S: AsyncRead + AsyncWrite + Unpin>(&mut self, mut stream: S) -> Ending<S> {
        let mut last_read = Instant::now();
        let mut pinged = false;
        // After bad XML nothing more is read: the session queues the stream error and closes.
        let mut reading = true;
        let outbox = self.outbox.clone();
        let mut shutdown = self.shutdown.clone();
        loop {
            let deadline = last_read
                + if pinged {
                    self.settings.idle_timeout
                } else {
                    self.settings.ping_after
                };
            tokio::select! {
                read = (ReadInto { stream: &mut stream, parser: &mut self.parser }), if reading => {
                    let pushed = match read {
                        Ok(None) | Err(_) => return Ending::Closed,
                        Ok(Some(pushed)) => pushed,
                    };
                    last_read = Instant::now();
                    pinged = false;
                    reading = self.deliver(pushed).await;
                }
                item = outbox.next() => {
                    let mut item = item;
                    loop {
                        match item {
                            Out::Data { bytes, reset: false } => {
                                // One write for everything already queued (fan-out bursts).
                                let (batch, next) = coalesce(bytes, &outbox);
                                if !self.write(&mut stream, &batch).await {
                                    return Ending::Closed;
                                }
                                match next {
                                    Some(n) => item = n,
                                    None => break,
                                }
                            }
                            Out::Data { bytes, reset: true } => {
                                if !self.write(&mut stream, &bytes).await {
                                    return Ending::Closed;
                                }
                                self.parser.reset();
                                break;
                            }
                            Out::StartTls(proceed) => {
                                if !self.write(&mut stream, &proceed).await || stream.flush().await.is_err() {
                                    return Ending::Closed;
                                }
                                return Ending::StartTls(stream);
                            }
                            Out::Close { last, linger } => {
                                let _ = timeout(Duration::from_secs(2), async {
                                    let _ = stream.write_all(&last).await;
                                    let _ = stream.shutdown().await;
                                })
                                .await;
                                if linger && reading {
                                    self.linger(&mut stream).await;
                                }
                                return Ending::Closed;
                            }
                        }
                    }
                }
                _ = outbox.overflowed() => {
                    tracing::info!(queued = outbox.queued_bytes(), "slow reader: send queue limit exceeded, disconnecting");
                    let last = stream_error_bytes(StreamErrorCondition::PolicyViolation, Some("send queue limit exceeded"));
                    let _ = timeout(Duration::from_secs(1), stream.write_all(&last)).await;
                    return Ending::Closed;
                }
                _ = shutdown.wait_for(|stop| *stop) => {
                    outbox.mark_closed();
                    let last = stream_error_bytes(StreamErrorCondition::SystemShutdown, Some("the server is shutting down"));
                    let _ = timeout(Duration::from_secs(1), async {
                        let _ = stream.write_all(&last).await;
                        let _ = stream.shutdown().await;
                    })
                    .await;
                    return Ending::Closed;
                }
                _ = sleep_until(deadline) => {
                    if pinged {
                        tracing::info!("idle timeout");
                        outbox.mark_closed();
                        let last = stream_error_bytes(StreamErrorCondition::ConnectionTimeout, None);
                        let _ = timeout(Duration::from_secs(1), stream.write_all(&last)).await;
                        return Ending::Closed;
                    }
                    pinged = true;
                    let _ = self.session.try_send(FromConnection::Idle);
                }
            }
        }
    }

    /// After our close: reads and hands on what the peer still sends until it closes its
    /// stream or the connection (or its XML breaks), for at most `close_wait`.
    async fn linger<S: AsyncRead + Unpin>(&mut self, stream: &mut S) {
        let deadline = Instant::now() + self.settings.close_wait;
        loop {
            let read = ReadInto {
                stream: &mut *stream,
                parser: &mut self.parser,
            };
            match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(Some(pushed))) => {
                    if !self.deliver(pushed).await || self.peer_closed {
                        return;
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => return,
                Err(_) => {
                    tracing::debug!("the client did not close its stream in time");
                    return;
                }
            }
        }
    }

    /// Writes one chunk, unless the outbox overflowed meanwhile.
    async fn write<S: AsyncWrite + Unpin>(&self, stream: &mut S, bytes: &[u8]) -> bool {
        let outbox = &self.outbox;
        let ok = tokio::select! {
            r = stream.write_all(bytes) => r.is_ok(),
            _ = outbox.overflowed() => {
                outbox.rearm_overflow();
                true
            }
        };
        outbox.written(bytes.len());
        ok
    }

    /// Hands each event of the bytes just pushed into the parser to the session, waiting for
    /// it to take them. Returns false after a parse error (reported to the session, which
    /// closes the stream).
    async fn deliver(&mut self, pushed: Result<(), XmlError>) -> bool {
        if let Err(e) = pushed {
            let _ = self.session.send(FromConnection::Xml(e)).await;
            return false;
        }
        loop {
            match self.parser.next_event() {
                Ok(Some(ev)) => {
                    self.peer_closed |= matches!(ev, StreamEvent::Close);
                    if self.session.send(FromConnection::Event(ev)).await.is_err() {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(e) => {
                    let _ = self.session.send(FromConnection::Xml(e)).await;
                    return false;
                }
            }
        }
    }
}
