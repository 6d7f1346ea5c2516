//! `XmppListener`: accepts c2s connections (RFC 6120 §3), enforces
//! `limits.max_connections` at accept time, and starts each `XmppSession` on one of the
//! node's worker arbiters, round robin.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use super::connection::{Connection, ConnectionSettings, ConnectionSlot};
use super::session::{XmppContext, XmppSession};
use crate::xmpp::stanza::{stream_error_bytes, StreamErrorCondition};

/// The listener actor.
pub struct XmppListener {
    listener: Option<TcpListener>,
    ctx: Arc<XmppContext>,
    workers: Vec<ArbiterHandle>,
    next: usize,
    connections: Arc<AtomicUsize>,
}

impl XmppListener {
    /// A listener over an already bound socket (so the caller knows the port).
    pub fn new(
        listener: TcpListener,
        ctx: Arc<XmppContext>,
        workers: Vec<ArbiterHandle>,
        connections: Arc<AtomicUsize>,
    ) -> Self {
        XmppListener {
            listener: Some(listener),
            ctx,
            workers,
            next: 0,
            connections,
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Accepted(TcpStream, SocketAddr);

impl Actor for XmppListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let me = ctx.address();
        actix_rt::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        if me.send(Accepted(stream, peer)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
}

impl Handler<Accepted> for XmppListener {
    type Result = ();

    fn handle(&mut self, Accepted(stream, peer): Accepted, _: &mut Context<Self>) {
        let max = self.ctx.limits.max_connections;
        if self.connections.fetch_add(1, Ordering::AcqRel) >= max {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            info!(%peer, max, "connection refused: limits.max_connections reached");
            actix_rt::spawn(refuse(stream));
            return;
        }
        let _ = stream.set_nodelay(true);
        let slot = ConnectionSlot(self.connections.clone());
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                warn!(%peer, error = %e, "cannot hand the socket to a worker");
                return;
            }
        };
        let ctx = self.ctx.clone();
        let worker = &self.workers[self.next % self.workers.len()];
        self.next = self.next.wrapping_add(1);
        let limits = &ctx.limits;
        let settings = ConnectionSettings {
            max_stanza_bytes: limits.max_stanza_bytes,
            max_stanza_depth: limits.max_stanza_depth,
            send_queue_bytes: limits.send_queue_bytes,
            ping_after: Duration::from_millis(limits.ping_after_ms),
            idle_timeout: Duration::from_millis(limits.idle_timeout_ms),
            close_wait: Duration::from_millis(limits.close_wait_ms),
        };
        XmppSession::start_in_arbiter(worker, move |_| {
            // Re-register the socket with this arbiter's reactor.
            let stream = TcpStream::from_std(std_stream)
                .expect("socket from accept is valid on a tokio runtime");
            XmppSession::new(ctx, stream, peer, slot, Connection::new(settings))
        });
    }
}

/// Answers a connection over the limit with a stream header and `resource-constraint`
/// (RFC 6120 §4.9.3.16), then closes it.
async fn refuse(mut stream: TcpStream) {
    let mut out = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".to_vec();
    out.extend(stream_error_bytes(
        StreamErrorCondition::ResourceConstraint,
        Some("too many connections"),
    ));
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&out)).await;
}
