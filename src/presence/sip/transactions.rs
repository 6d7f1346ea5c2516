//! The transaction layer of the SIP part (RFC 3261 §17): server transactions for the
//! requests the shard receives (§17.2, matched per §17.2.3, retransmissions answered from the
//! transaction), non-INVITE client transactions for the requests it sends (§17.1.2), and the
//! requests no part of the shard serves (§8.2: OPTIONS, CANCEL, out-of-dialog requests, 405).
//! The machines are `crate::sip::transaction`'s; this layer keeps them, arms their timers
//! and turns their actions into [`SipFx`].

use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info};

use super::super::context::{Outgoing, Requester};
use super::state::{
    ClientTx, Purpose, ServerFsm, ServerTx, SipFx, SipIo, SipState, SipTimer, BRANCH_PREFIX,
};
use crate::sip::message::{self, Method, Request, RequestBuilder, Response};
use crate::sip::timer::{TimerId, TimerQueue};
use crate::sip::transaction::{
    Action, ClientNonInvite, Key, Reliability, ServerInvite, ServerNonInvite, Timer,
};
use crate::sip::transport::Peer;

impl SipState {
    /// A fresh branch naming this shard (RFC 3261 §8.1.1.7).
    pub(super) fn new_branch(&mut self, io: &SipIo<'_>) -> String {
        self.seq += 1;
        format!(
            "{BRANCH_PREFIX}{}-{:x}{}",
            io.cx.index,
            self.seq,
            &message::new_tag()
        )
    }

    // ---- server transactions (RFC 3261 §17.2) --------------------------------------------

    /// A request from `source`: an ACK or a retransmission is handled by its transaction;
    /// a new request gets one, and its key and the peer to answer are returned for the
    /// request to be served. Nothing is served before the transport is bound.
    pub(crate) fn accept(
        &mut self,
        io: &mut SipIo<'_>,
        req: &Request,
        source: Peer,
    ) -> Option<(Key, Peer)> {
        let timers = io.cx.sip?.timers;
        let via = &req.base.via;
        let method = req.method().clone();
        let branch = via.branch.clone().unwrap_or_default();
        let key = if via.is_rfc3261_branch() {
            Key::server(&branch, &via.sent_by(), method.as_str())
        } else {
            Key::server_rfc2543(
                &req.uri().to_string(),
                req.base.from.tag().unwrap_or_default(),
                &req.base.call_id,
                req.base.cseq.seq,
                &via.to_string(),
                method.as_str(),
            )
        };
        if method == Method::Ack {
            // An ACK for a non-2xx final response is absorbed by its INVITE transaction
            // (RFC 3261 §17.2.1); an ACK for anything else has no one to go to.
            let actions = match self.server.get_mut(&key) {
                Some(ServerTx {
                    fsm: ServerFsm::Invite(f),
                    ..
                }) => f.on_ack(),
                _ => {
                    debug!(shard = io.cx.index, "ACK without a transaction dropped");
                    return None;
                }
            };
            self.run_server_actions(io, &key, actions);
            return None;
        }
        if let Some(tx) = self.server.get_mut(&key) {
            // A retransmission: answered from the transaction (RFC 3261 §17.2.2).
            let actions = match &mut tx.fsm {
                ServerFsm::NonInvite(f) => f.on_request_retransmission(),
                ServerFsm::Invite(f) => f.on_request_retransmission(),
            };
            self.run_server_actions(io, &key, actions);
            return None;
        }
        let peer = match source {
            Peer::Tcp(_) => source,
            Peer::Udp(src) => Peer::Udp(crate::sip::transport::udp_target(via, src)),
        };
        let rel = if peer.reliable() {
            Reliability::Reliable
        } else {
            Reliability::Unreliable
        };
        let fsm = match method {
            Method::Invite => ServerFsm::Invite(ServerInvite::new(rel, timers)),
            _ => ServerFsm::NonInvite(ServerNonInvite::new(rel, timers)),
        };
        self.server.insert(
            key.clone(),
            ServerTx {
                fsm,
                peer,
                timers: Vec::new(),
            },
        );
        Some((key, peer))
    }

    pub(super) fn server_timer(&mut self, io: &mut SipIo<'_>, key: &Key, timer: Timer) {
        let actions = match self.server.get_mut(key) {
            Some(tx) => {
                tx.timers.retain(|(t, _)| *t != timer);
                match &mut tx.fsm {
                    ServerFsm::NonInvite(f) => f.on_timer(timer),
                    ServerFsm::Invite(f) => f.on_timer(timer),
                }
            }
            None => return,
        };
        self.run_server_actions(io, key, actions);
    }

    fn run_server_actions(&mut self, io: &mut SipIo<'_>, key: &Key, actions: Vec<Action>) {
        for action in actions {
            let SipState { server, timers, .. } = &mut *self;
            let Some(tx) = server.get_mut(key) else {
                return;
            };
            match action {
                Action::Send(bytes) => io.fx.push(SipFx::Send {
                    peer: tx.peer,
                    bytes,
                    client: None,
                }),
                Action::Schedule(timer, after) => {
                    let what = SipTimer::Server(key.clone(), timer);
                    arm(timers, &mut tx.timers, timer, io.cx.now, after, what);
                }
                Action::Cancel(timer) => disarm(timers, &mut tx.timers, timer),
                Action::Timeout => {
                    debug!(shard = io.cx.index, ?key, "server transaction timed out");
                }
                Action::Terminated => {
                    if let Some(tx) = self.server.remove(key) {
                        for (_, id) in tx.timers {
                            self.timers.cancel(id);
                        }
                    }
                }
                Action::DeliverResponse(_) => {}
            }
        }
    }

    /// Sends the final (or provisional) response of the server transaction `key`.
    pub(crate) fn respond(&mut self, io: &mut SipIo<'_>, key: &Key, status: u16, bytes: Bytes) {
        let actions = match self.server.get_mut(key) {
            Some(tx) => match &mut tx.fsm {
                ServerFsm::NonInvite(f) => f.respond(status, bytes),
                ServerFsm::Invite(f) => f.respond(status, bytes),
            },
            None => return,
        };
        self.run_server_actions(io, key, actions);
    }

    /// Answers a request no part of the shard serves (RFC 3261 §8.2, §9.2, §12.2.2).
    pub(crate) fn unserved(&mut self, io: &mut SipIo<'_>, key: &Key, req: &Request) {
        let method = req.method();
        match method {
            Method::Options => {
                let resp = message::reply(req, 200, "OK")
                    .to_tag(&message::new_tag())
                    .header("Allow", message::ALLOW)
                    .header("Accept", "application/pidf+xml, text/plain")
                    .header("Allow-Events", "presence")
                    .build();
                self.respond(io, key, 200, resp);
            }
            Method::Cancel => {
                // Every request is answered at once, so there is never anything to cancel
                // (RFC 3261 §9.2: 481 when no transaction matches, 200 when it is over).
                let via = &req.base.via;
                let branch = via.branch.clone().unwrap_or_default();
                let invite = Key::server(&branch, &via.sent_by(), "INVITE");
                let (status, reason) = if self.server.contains_key(&invite) {
                    (200, "OK")
                } else {
                    (481, "Call/Transaction Does Not Exist")
                };
                let resp = message::reply(req, status, reason).build();
                self.respond(io, key, status, resp);
            }
            Method::Notify | Method::Bye | Method::Info | Method::Update | Method::Prack => {
                // We hold no dialog in which these could arrive (RFC 3261 §12.2.2).
                let resp = message::reply(req, 481, "Call/Transaction Does Not Exist").build();
                self.respond(io, key, 481, resp);
            }
            _ => {
                // INVITE (no calls here), REFER and extension methods (RFC 3261 §8.2.1).
                info!(shard = io.cx.index, method = %method, "method not allowed");
                let resp = message::reply(req, 405, "Method Not Allowed")
                    .to_tag(&message::new_tag())
                    .header("Allow", message::ALLOW)
                    .build();
                self.respond(io, key, 405, resp);
            }
        }
    }

    // ---- client transactions (RFC 3261 §17.1) --------------------------------------------

    /// Sends a request another part of the shard built, in a new client transaction; its
    /// outcome comes back as [`SipFx::Done`].
    pub(crate) fn send_request(&mut self, io: &mut SipIo<'_>, out: Outgoing) {
        let branch = self.new_branch(io);
        let mut b = RequestBuilder::new(out.method, &out.target)
            .header("Via", io.cx.via(out.peer, &branch))
            .header("Max-Forwards", "70");
        for (name, value) in out.headers {
            b = b.header(name, value);
        }
        if let Some((ct, body)) = out.body {
            b = b.body(ct, body);
        }
        self.start_request(
            io,
            out.peer,
            branch,
            b.build(),
            Purpose::Other(out.requester),
        );
    }

    /// Starts a non-INVITE client transaction for `request` (built with Via branch `branch`).
    pub(super) fn start_request(
        &mut self,
        io: &mut SipIo<'_>,
        peer: Peer,
        branch: String,
        request: Bytes,
        purpose: Purpose,
    ) {
        let Some(sip) = io.cx.sip else {
            return;
        };
        let rel = if peer.reliable() {
            Reliability::Reliable
        } else {
            Reliability::Unreliable
        };
        let (fsm, actions) = ClientNonInvite::start(rel, sip.timers, request);
        self.client.insert(
            branch.clone(),
            ClientTx {
                fsm,
                peer,
                timers: Vec::new(),
                purpose,
            },
        );
        self.run_client_actions(io, &branch, actions);
    }

    pub(super) fn client_timer(&mut self, io: &mut SipIo<'_>, branch: &str, timer: Timer) {
        let actions = match self.client.get_mut(branch) {
            Some(tx) => {
                tx.timers.retain(|(t, _)| *t != timer);
                tx.fsm.on_timer(timer)
            }
            None => return,
        };
        self.run_client_actions(io, branch, actions);
    }

    /// Sending a request of client transaction `branch` failed on a reliable transport:
    /// the transaction ends (RFC 3261 §17.1.4).
    pub(crate) fn transport_error(&mut self, io: &mut SipIo<'_>, branch: &str) {
        let actions = match self.client.get_mut(branch) {
            Some(tx) => tx.fsm.on_transport_error(),
            None => return,
        };
        self.run_client_actions(io, branch, actions);
    }

    fn run_client_actions(&mut self, io: &mut SipIo<'_>, branch: &str, actions: Vec<Action>) {
        for action in actions {
            let Some(tx) = self.client.get_mut(branch) else {
                return;
            };
            match action {
                Action::Send(bytes) => io.fx.push(SipFx::Send {
                    peer: tx.peer,
                    bytes,
                    client: Some(branch.to_string()),
                }),
                Action::Schedule(timer, after) => {
                    let what = SipTimer::Client(branch.to_string(), timer);
                    arm(
                        &mut self.timers,
                        &mut tx.timers,
                        timer,
                        io.cx.now,
                        after,
                        what,
                    );
                }
                Action::Cancel(timer) => disarm(&mut self.timers, &mut tx.timers, timer),
                Action::DeliverResponse(status) => {
                    if status >= 200 {
                        let purpose = std::mem::replace(&mut tx.purpose, Purpose::Message);
                        self.request_done(io, purpose, Some(status));
                    }
                }
                Action::Timeout => {
                    let purpose = std::mem::replace(&mut tx.purpose, Purpose::Message);
                    self.request_done(io, purpose, None);
                }
                Action::Terminated => {
                    if let Some(tx) = self.client.remove(branch) {
                        for (_, id) in tx.timers {
                            self.timers.cancel(id);
                        }
                    }
                }
            }
        }
    }

    /// The outcome of a request we sent: a final status, or `None` on timeout/transport error.
    fn request_done(&mut self, io: &mut SipIo<'_>, purpose: Purpose, status: Option<u16>) {
        match purpose {
            Purpose::Notify(id) => self.notify_done(io, &id, status),
            Purpose::Other(requester) => io.fx.push(SipFx::Done { requester, status }),
            Purpose::Message => {
                if !matches!(status, Some(200..=299)) {
                    info!(
                        shard = io.cx.index,
                        ?status,
                        "MESSAGE to a user agent failed"
                    );
                }
            }
        }
    }

    /// The Call-ID of the back-end subscription whose client transaction `branch` is, if
    /// it is one (its responses go to the back-end part first).
    pub(crate) fn backend_call(&self, branch: &str) -> Option<String> {
        match self.client.get(branch) {
            Some(ClientTx {
                purpose: Purpose::Other(Requester::Backend(call_id)),
                ..
            }) => Some(call_id.clone()),
            _ => None,
        }
    }

    /// A response to one of our requests.
    pub(crate) fn response(&mut self, io: &mut SipIo<'_>, resp: &Response) {
        let Some(branch) = resp.base.via.branch.as_deref() else {
            return;
        };
        let actions = match self.client.get_mut(branch) {
            Some(tx) => tx.fsm.on_response(resp.status),
            None => {
                debug!(shard = io.cx.index, %branch, status = resp.status, "stray response");
                return;
            }
        };
        self.run_client_actions(io, branch, actions);
    }

    /// A new out-of-dialog MESSAGE from `from` to `target` (RFC 3428 §4): its branch and
    /// bytes.
    pub(super) fn build_message(
        &mut self,
        io: &SipIo<'_>,
        target: &str,
        peer: Peer,
        from: &str,
        to: &str,
        body: (&str, Bytes),
    ) -> (String, Bytes) {
        let branch = self.new_branch(io);
        let method = Method::Message;
        let (ct, body) = body;
        let bytes = RequestBuilder::new(method.clone(), target)
            .header("Via", io.cx.via(peer, &branch))
            .header("Max-Forwards", "70")
            .header("From", format!("<{from}>;tag={}", message::new_tag()))
            .header("To", format!("<{to}>"))
            .header("Call-ID", message::new_tag() + &message::new_tag())
            .header("CSeq", format!("1 {}", method.as_str()))
            .body(ct, body)
            .build();
        (branch, bytes)
    }
}

/// Arms `timer` of one transaction, replacing its previous deadline.
fn arm(
    queue: &mut TimerQueue<SipTimer>,
    armed: &mut Vec<(Timer, TimerId)>,
    timer: Timer,
    now: std::time::Instant,
    after: Duration,
    what: SipTimer,
) {
    disarm(queue, armed, timer);
    armed.push((timer, queue.schedule(now + after, what)));
}

/// Cancels `timer` of one transaction.
fn disarm(queue: &mut TimerQueue<SipTimer>, armed: &mut Vec<(Timer, TimerId)>, timer: Timer) {
    armed.retain(|(t, id)| {
        if *t == timer {
            queue.cancel(*id);
        }
        *t != timer
    });
}
