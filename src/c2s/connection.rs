//! The socket side of one c2s connection: a task that owns the TCP (later TLS) stream, feeds
//! the incremental parser, hands events to its `XmppSession` actor and writes what the
//! session and the presence hub queue in the session's [`Outbox`].
//!
//! Back-pressure (RFC 6120 §13.12 asks servers to protect themselves): the task waits for
//! the session to take each event before reading more, so a fast sender is slowed at the TCP
//! level; the outbox counts queued bytes and a client that lets them pass
//! `limits.send_queue_bytes` is cut off with `policy-violation` at once, without waiting
//! for its socket to drain.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_rustls::TlsAcceptor;

use crate::xmpp::stanza::{stream_error_bytes, StreamErrorCondition};
use crate::xmpp::xml::{Element, ParserLimits, StreamEvent, StreamParser, XmlError, CLIENT_NS};

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

enum Out {
    /// Bytes to write; `reset` restarts the parser right after them (SASL success).
    Data { bytes: Bytes, reset: bool },
    /// Write the `<proceed/>` bytes, then run the TLS handshake.
    StartTls(Bytes),
    /// Write the final bytes and close; with `linger`, what the peer still sends is read
    /// and handled until it closes too (RFC 6120 §4.4), for at most `close_wait`.
    Close { last: Bytes, linger: bool },
}

/// The queue behind an [`Outbox`]. A plain deque under a mutex rather than a channel: an
/// idle session's queue then holds no memory at all (a tokio channel allocates a block of 32
/// slots up front, ~1.3 KiB per session), and a burst's capacity is given back once drained.
struct OutboxInner {
    queue: Mutex<VecDeque<Out>>,
    /// Woken on every push (a permit is kept when the task is not waiting).
    ready: Notify,
    queued: AtomicUsize,
    limit: usize,
    closed: AtomicBool,
    overflow: AtomicBool,
    kill: Notify,
}

/// The bounded queue of bytes towards one client. Cloned into the presence hub's routing
/// table so fan-out writes straight to it, with no actor hop.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<OutboxInner>,
}

impl Outbox {
    fn new(limit: usize) -> Outbox {
        let inner = OutboxInner {
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            queued: AtomicUsize::new(0),
            limit,
            closed: AtomicBool::new(false),
            overflow: AtomicBool::new(false),
            kill: Notify::new(),
        };
        Outbox {
            inner: Arc::new(inner),
        }
    }

    fn enqueue(&self, item: Out) {
        self.inner
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(item);
        self.inner.ready.notify_one();
    }

    fn push(&self, item: Out, len: usize) -> bool {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return false;
        }
        let queued = inner.queued.fetch_add(len, Ordering::AcqRel) + len;
        if queued > inner.limit {
            if !inner.overflow.swap(true, Ordering::AcqRel) {
                inner.closed.store(true, Ordering::Release);
                inner.kill.notify_one();
            }
            return false;
        }
        self.enqueue(item);
        true
    }

    /// An outbox with no connection behind it: every send is refused. Stands in for the
    /// resources that SIP publications show to XMPP contacts (RFC 8048 §4), which receive
    /// nothing through the XMPP path.
    pub fn detached() -> Outbox {
        let outbox = Outbox::new(0);
        outbox.inner.closed.store(true, Ordering::Release);
        outbox
    }

    /// Queues raw bytes; false when the connection is closing or the queue overflowed.
    pub fn send(&self, bytes: Bytes) -> bool {
        let len = bytes.len();
        self.push(
            Out::Data {
                bytes,
                reset: false,
            },
            len,
        )
    }

    /// Serialises and queues a stanza (default namespace `jabber:client`).
    pub fn send_element(&self, el: &Element) -> bool {
        let mut out = Vec::with_capacity(256);
        el.write_to(&mut out, CLIENT_NS);
        self.send(out.into())
    }

    /// Queues bytes after which the parser expects a new stream header (RFC 6120 §6.4.6).
    pub fn send_then_restart(&self, bytes: Bytes) -> bool {
        let len = bytes.len();
        self.push(Out::Data { bytes, reset: true }, len)
    }

    /// Queues `<proceed/>` and the TLS handshake after it (RFC 6120 §5.4.2.3).
    pub fn start_tls(&self, proceed: Bytes) -> bool {
        let len = proceed.len();
        self.push(Out::StartTls(proceed), len)
    }

    /// Queues the final bytes (stream error and/or `</stream:stream>`) and closes after them;
    /// later sends are refused.
    pub fn close(&self, last: Bytes) {
        self.close_as(last, false);
    }

    /// [`Self::close`], but the stream is still read until the client closes its side, for
    /// at most `limits.close_wait_ms`, and what it sent is handled (RFC 6120 §4.4: the
    /// closing side goes on processing what it receives). For `see-other-host` after a
    /// move: whatever the client sent before it saw the redirect is not lost.
    pub fn close_lingering(&self, last: Bytes) {
        self.close_as(last, true);
    }

    fn close_as(&self, last: Bytes, linger: bool) {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        inner.queued.fetch_add(last.len(), Ordering::AcqRel);
        self.enqueue(Out::Close { last, linger });
    }

    /// Closes with a stream error (RFC 6120 §4.9).
    pub fn close_with_error(&self, condition: StreamErrorCondition, text: Option<&str>) {
        self.close(stream_error_bytes(condition, text).into());
    }

    /// True once the connection stops taking data.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.inner.queued.load(Ordering::Acquire)
    }
}

impl OutboxInner {
    /// The next queued item, if any. An emptied queue that grew past a few items gives its
    /// memory back.
    fn pop(&self) -> Option<Out> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let item = q.pop_front();
        if q.is_empty() && q.capacity() > 16 {
            *q = VecDeque::new();
        }
        item
    }

    /// Waits for the next queued item.
    async fn next(&self) -> Out {
        loop {
            if let Some(item) = self.pop() {
                return item;
            }
            self.ready.notified().await;
        }
    }
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
        io.outbox.inner.closed.store(true, Ordering::Release);
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
fn coalesce(first: Bytes, inner: &OutboxInner) -> (Bytes, Option<Out>) {
    let mut batch: Option<Vec<u8>> = None;
    let mut len = first.len();
    while len < WRITE_BATCH {
        match inner.pop() {
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
        let inner = self.outbox.inner.clone();
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
                item = inner.next() => {
                    let mut item = item;
                    loop {
                        match item {
                            Out::Data { bytes, reset: false } => {
                                // One write for everything already queued (fan-out bursts).
                                let (batch, next) = coalesce(bytes, &inner);
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
                _ = inner.kill.notified() => {
                    tracing::info!(queued = inner.queued.load(Ordering::Acquire), "slow reader: send queue limit exceeded, disconnecting");
                    let last = stream_error_bytes(StreamErrorCondition::PolicyViolation, Some("send queue limit exceeded"));
                    let _ = timeout(Duration::from_secs(1), stream.write_all(&last)).await;
                    return Ending::Closed;
                }
                _ = shutdown.wait_for(|stop| *stop) => {
                    inner.closed.store(true, Ordering::Release);
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
                        inner.closed.store(true, Ordering::Release);
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
        let inner = &self.outbox.inner;
        let ok = tokio::select! {
            r = stream.write_all(bytes) => r.is_ok(),
            _ = inner.kill.notified() => {
                inner.kill.notify_one();
                true
            }
        };
        inner.queued.fetch_sub(bytes.len(), Ordering::AcqRel);
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
