//! The sink of one XMPP client: a bounded queue of bytes that the presence shards and the
//! client's session fill and the client's connection task drains (RFC 6120 §13.12 asks
//! servers to protect themselves from slow readers).
//!
//! Presence owns it because its routing table holds one per bound resource: fan-out writes
//! serialised stanzas straight into each recipient's outbox, without an actor hop. The
//! connection (`c2s::connection`, an edge above presence) only reads it: [`Outbox::next`],
//! [`Outbox::pop`], [`Outbox::written`] and the kill signal of a queue that overflowed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::xml::{Element, CLIENT_NS};
use crate::xmpp::stanza::{stream_error_bytes, StreamErrorCondition};

/// One item of an [`Outbox`], in the order the writer takes them.
pub enum Out {
    /// Bytes to write; `reset` restarts the parser right after them (SASL success).
    Data {
        /// The bytes.
        bytes: Bytes,
        /// Restart the stream parser after them.
        reset: bool,
    },
    /// Write the `<proceed/>` bytes, then run the TLS handshake.
    StartTls(Bytes),
    /// Write the final bytes and close; with `linger`, what the peer still sends is read
    /// and handled until it closes too (RFC 6120 §4.4), for at most `close_wait`.
    Close {
        /// The last bytes (stream error and/or `</stream:stream>`).
        last: Bytes,
        /// Keep reading until the peer closes.
        linger: bool,
    },
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
/// table so fan-out writes straight to it, with no actor hop; a client that lets more than
/// its limit pile up is cut off at once, without waiting for its socket to drain.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<OutboxInner>,
}

impl Outbox {
    /// An open outbox that holds at most `limit` queued bytes (`limits.send_queue_bytes`).
    pub fn new(limit: usize) -> Outbox {
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

    // ---- the reading side: the connection task ------------------------------------------

    /// Refuses every later send (the connection is gone or going).
    pub fn mark_closed(&self) {
        self.inner.closed.store(true, Ordering::Release);
    }

    /// The next queued item, if any. An emptied queue that grew past a few items gives its
    /// memory back.
    pub fn pop(&self) -> Option<Out> {
        let mut q = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
        let item = q.pop_front();
        if q.is_empty() && q.capacity() > 16 {
            *q = VecDeque::new();
        }
        item
    }

    /// Waits for the next queued item.
    pub async fn next(&self) -> Out {
        loop {
            if let Some(item) = self.pop() {
                return item;
            }
            self.inner.ready.notified().await;
        }
    }

    /// `len` queued bytes were written (or dropped): they no longer count towards the limit.
    pub fn written(&self, len: usize) {
        self.inner.queued.fetch_sub(len, Ordering::AcqRel);
    }

    /// Completes once the queue overflowed: the client is too slow and is cut off.
    pub fn overflowed(&self) -> Notified<'_> {
        self.inner.kill.notified()
    }

    /// Passes the overflow signal on to the next [`Self::overflowed`] (a writer that took it
    /// while writing leaves it for the main loop).
    pub fn rearm_overflow(&self) {
        self.inner.kill.notify_one();
    }
}
