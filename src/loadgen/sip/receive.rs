//! Receiving: datagrams, requests from the server (NOTIFY, MESSAGE), responses to our
//! transactions and their outcome, and timers (RFC 3261 §17.1.2).

use super::*;

impl Engine {
    pub(super) fn datagram(&mut self, data: &[u8], src: SocketAddr) {
        if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
            return;
        }
        match message::parse(
            data,
            &Limits {
                max_message_bytes: MAX_MESSAGE,
            },
        ) {
            Ok(Message::Response(r)) => self.response(r),
            Ok(Message::Request(req)) => self.request(req, src),
            Err(message::Rejection::Reply { response, via, .. }) => {
                self.transmit(&response, response_dest(&via, src));
            }
            Err(message::Rejection::Drop { reason }) => {
                self.run.error("sip_unparsable", || reason);
            }
        }
    }

    pub(super) fn request(&mut self, req: message::Request, src: SocketAddr) {
        let dest = response_dest(&req.base.via, src);
        if *req.method() != Method::Notify {
            let status = if *req.method() == Method::Options {
                (200, "OK")
            } else {
                (405, "Method Not Allowed")
            };
            let bytes = message::reply(&req, status.0, status.1).build();
            self.transmit(&bytes, dest);
            return;
        }
        let state = req
            .header("Subscription-State")
            .and_then(|v| SubscriptionState::parse(v).ok());
        let known = self.dialogs.get(&req.base.call_id).copied();
        let status = match (&known, &state) {
            (None, Some(SubscriptionState::Terminated { .. })) => 200,
            (None, _) => 481,
            _ => 200,
        };
        let reason = if status == 200 {
            "OK"
        } else {
            "Call/Transaction Does Not Exist"
        };
        let bytes = message::reply(&req, status, reason).build();
        self.transmit(&bytes, dest);
        self.run.sip.borrow_mut().notify_received += 1;
        let remote = || -> Option<Dialog> {
            Some(Dialog {
                remote_tag: req.base.from.tag()?.to_string(),
                remote_target: req
                    .header("Contact")
                    .and_then(contact_uri)
                    .unwrap_or_else(|| req.uri().to_string()),
                routes: Vec::new(),
            })
        };
        match known {
            Some(DialogRef::Held(u, slot)) => {
                let phase = self.run.sip_phase.get();
                let h = &mut self.users[u].subs[slot];
                if h.dialog.is_none() {
                    h.dialog = remote();
                }
                match state {
                    Some(SubscriptionState::Active { .. }) => {
                        h.state = HeldState::Established { pending: false }
                    }
                    Some(SubscriptionState::Pending { .. }) => {
                        h.state = HeldState::Established { pending: true }
                    }
                    Some(SubscriptionState::Terminated {
                        reason,
                        retry_after,
                    }) => {
                        h.state = HeldState::Idle;
                        h.dialog = None;
                        if let Some(t) = h.timer.take() {
                            self.timers.cancel(t);
                        }
                        let retry = matches!(
                            reason,
                            None | Some(Reason::Deactivated)
                                | Some(Reason::Timeout)
                                | Some(Reason::Probation)
                                | Some(Reason::Giveup)
                        );
                        if retry
                            && h.resubscribes < MAX_RESUBSCRIBES
                            && phase != SipPhase::Logout
                            && !h.busy
                        {
                            h.resubscribes += 1;
                            let wait =
                                Duration::from_secs(u64::from(retry_after.unwrap_or(0).min(30)));
                            h.timer = Some(
                                self.timers
                                    .schedule(Instant::now() + wait, Timer::Resubscribe(u, slot)),
                            );
                        } else if !retry {
                            let why = reason.map_or("none", |r| r.token());
                            self.run
                                .error(format!("subscription_terminated_{why}"), || {
                                    format!("NOTIFY terminated;reason={why}")
                                });
                        }
                    }
                    None => {}
                }
            }
            Some(DialogRef::Cycle(id)) => {
                let Some(c) = self.cycles.get_mut(&id) else {
                    return;
                };
                if c.dialog.is_none() {
                    c.dialog = remote();
                }
                c.notified = true;
                if c.subscribed && !c.unsubscribing {
                    self.cycle_unsubscribe(id);
                }
            }
            None => {}
        }
    }

    pub(super) fn cycle_unsubscribe(&mut self, id: u64) {
        let Some(c) = self.cycles.get_mut(&id) else {
            return;
        };
        c.unsubscribing = true;
        if let Some(t) = c.timer.take() {
            self.timers.cancel(t);
        }
        let (u, started) = (c.user, c.started);
        self.send(
            u,
            Op::CycleUnsubscribe(id),
            OpCtx {
                started,
                auth_tries: 0,
                retries: 0,
                gate: Gate::Free,
            },
        );
    }

    pub(super) fn response(&mut self, resp: Response) {
        let Some(branch) = resp.base.via.branch.clone() else {
            return;
        };
        if resp.status < 200 {
            if let Some(t) = self.txns.get_mut(&branch) {
                t.interval = T2;
            }
            return;
        }
        let Some(t) = self.txns.remove(&branch) else {
            return; // a retransmitted final response
        };
        self.timers.cancel(t.timer);
        self.run
            .sip
            .borrow_mut()
            .codes
            .add(format!("{} {}", t.method, resp.status), 1);
        let (u, op, mut ctx) = (t.user, t.op, t.ctx);
        match resp.status {
            200..=299 => self.ok(u, op, ctx, &resp),
            // An un-SUBSCRIBE whose dialog the notifier already ended (a user moved to another
            // node gets NOTIFY terminated;reason=deactivated, which can cross our request):
            // 481 says there is nothing left to end (RFC 6665 §4.1.2.3, RFC 3261 §12.2.2),
            // which is what we asked for. The code is still counted in `codes`.
            481 if matches!(op, Op::Unsubscribe { .. } | Op::CycleUnsubscribe(_)) => {
                self.ok(u, op, ctx, &resp)
            }
            401 | 407 => {
                let name = if resp.status == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                match Challenge::pick(resp.headers(name)) {
                    Some(challenge) if ctx.auth_tries < MAX_AUTH => {
                        self.users[u].auth = Some(Auth {
                            challenge,
                            nc: 0,
                            proxy: resp.status == 407,
                        });
                        ctx.auth_tries += 1;
                        self.send(u, op, ctx);
                    }
                    _ => self.failed(u, op, ctx, &resp.status.to_string()),
                }
            }
            300..=399 if self.run.set.opts.follow_redirects && ctx.retries < MAX_RETRIES => {
                let to = resp
                    .header("Contact")
                    .and_then(contact_uri)
                    .and_then(|c| uri_addr(&c));
                match to {
                    Some(addr) => {
                        self.run.stats.borrow_mut().sip_302 += 1;
                        self.users[u].target = addr;
                        ctx.retries += 1;
                        self.send(u, op, ctx);
                    }
                    None => self.failed(u, op, ctx, "3xx_without_usable_contact"),
                }
            }
            423 if ctx.retries < MAX_RETRIES => match expires(resp.header("Min-Expires")) {
                Some(min) if min > EXPIRES.max(self.users[u].min_expires) => {
                    self.users[u].min_expires = min;
                    ctx.retries += 1;
                    self.send(u, op, ctx);
                }
                _ => self.failed(u, op, ctx, "423"),
            },
            s => self.failed(u, op, ctx, &s.to_string()),
        }
    }

    pub(super) fn counter(s: &mut SipStats, op: Op) -> &mut TxCounter {
        match op {
            Op::Publish(_) => &mut s.publish,
            Op::Subscribe { .. } | Op::Unsubscribe { .. } => &mut s.subscribe,
            Op::CycleSubscribe(_) | Op::CycleUnsubscribe(_) => &mut s.cycle,
        }
    }

    /// Gate bookkeeping when a logical request ends.
    pub(super) fn ended(&mut self, u: usize, ctx: OpCtx) {
        if ctx.gate == Gate::Free {
            return;
        }
        self.gate_inflight = self.gate_inflight.saturating_sub(1);
        if ctx.gate != Gate::Setup {
            return;
        }
        let mut s = self.run.sip.borrow_mut();
        s.setup_remaining = s.setup_remaining.saturating_sub(1);
        let user = &mut self.users[u];
        user.setup_left = user.setup_left.saturating_sub(1);
        if user.setup_left == 0 {
            s.setup_users_done += 1;
        }
    }

    pub(super) fn ok(&mut self, u: usize, op: Op, ctx: OpCtx, resp: &Response) {
        let now = Instant::now();
        let in_window = self.run.in_window(now);
        let counted = !matches!(op, Op::CycleSubscribe(_) | Op::CycleUnsubscribe(_));
        if counted {
            let mut s = self.run.sip.borrow_mut();
            let c = Engine::counter(&mut s, op);
            c.ok += 1;
            c.ok_in_window += u64::from(in_window);
            c.latency.record(now - ctx.started);
        }
        let granted = expires(resp.header("Expires")).unwrap_or(EXPIRES);
        let refresh_at = now + Duration::from_secs(u64::from(granted.max(2)) * 4 / 5);
        let logout = self.run.sip_phase.get() == SipPhase::Logout;
        match op {
            Op::Publish(kind) => {
                let user = &mut self.users[u];
                user.pub_busy = false;
                if let Some(t) = user.pub_timer.take() {
                    self.timers.cancel(t);
                }
                if kind == PubKind::Remove {
                    user.etag = None;
                } else {
                    user.etag = resp.header("SIP-ETag").map(|e| e.trim().to_string());
                    if !logout && granted > 0 {
                        user.pub_timer =
                            Some(self.timers.schedule(refresh_at, Timer::RefreshPublish(u)));
                    }
                }
            }
            Op::Subscribe { slot, .. } => {
                let h = &mut self.users[u].subs[slot];
                h.busy = false;
                if let Some(d) = dialog_from_response(resp) {
                    h.dialog = Some(d);
                }
                if h.state == HeldState::Idle {
                    h.state = HeldState::Established {
                        pending: resp.status == 202,
                    };
                }
                if let Some(t) = h.timer.take() {
                    self.timers.cancel(t);
                }
                if !logout && granted > 0 {
                    h.timer = Some(
                        self.timers
                            .schedule(refresh_at, Timer::RefreshSubscribe(u, slot)),
                    );
                }
            }
            Op::Unsubscribe { slot } => {
                let h = &mut self.users[u].subs[slot];
                h.busy = false;
                h.state = HeldState::Idle;
                h.dialog = None;
            }
            Op::CycleSubscribe(id) => {
                self.run
                    .sip
                    .borrow_mut()
                    .cycle_subscribe
                    .record(now - ctx.started);
                if let Some(c) = self.cycles.get_mut(&id) {
                    c.subscribed = true;
                    if let Some(d) = dialog_from_response(resp) {
                        c.dialog = Some(d);
                    }
                    if c.notified {
                        self.cycle_unsubscribe(id);
                    } else {
                        c.timer = Some(
                            self.timers
                                .schedule(now + CYCLE_NOTIFY_WAIT, Timer::CycleWait(id)),
                        );
                    }
                }
            }
            Op::CycleUnsubscribe(id) => self.cycle_end(id, now),
        }
        self.ended(u, ctx);
    }

    pub(super) fn cycle_end(&mut self, id: u64, now: Instant) {
        let Some(c) = self.cycles.remove(&id) else {
            return;
        };
        if let Some(t) = c.timer {
            self.timers.cancel(t);
        }
        self.dialogs.remove(&c.call_id);
        self.users[c.user].cycle_busy = false;
        let ok = !c.failed && c.notified && c.subscribed;
        let in_window = self.run.in_window(now);
        let mut s = self.run.sip.borrow_mut();
        if ok {
            s.cycle.ok += 1;
            s.cycle.ok_in_window += u64::from(in_window);
            s.cycle.latency.record(now - c.started);
        } else {
            s.cycle.failed += 1;
        }
    }

    pub(super) fn failed(&mut self, u: usize, op: Op, ctx: OpCtx, why: &str) {
        let method = op.method();
        self.run.error(
            format!("sip_{}_{why}", method.as_str().to_ascii_lowercase()),
            || format!("{method} for {} ended with {why}", self.users[u].name),
        );
        let counted = !matches!(op, Op::CycleSubscribe(_) | Op::CycleUnsubscribe(_));
        if counted {
            let mut s = self.run.sip.borrow_mut();
            Engine::counter(&mut s, op).failed += 1;
        }
        let logout = self.run.sip_phase.get() == SipPhase::Logout;
        match op {
            Op::Publish(kind) => {
                let user = &mut self.users[u];
                user.pub_busy = false;
                if why == "412" {
                    // The entity-tag is unknown (expired): publish anew.
                    user.etag = None;
                    if !logout && kind != PubKind::Remove {
                        self.ended(u, ctx);
                        self.start(u, Op::Publish(PubKind::Initial), Gate::Free);
                        return;
                    }
                }
            }
            Op::Subscribe { slot, refresh } => {
                let h = &mut self.users[u].subs[slot];
                h.busy = false;
                h.state = HeldState::Idle;
                h.dialog = None;
                if refresh && why == "481" && !logout {
                    // The dialog is gone on the server: subscribe anew.
                    self.ended(u, ctx);
                    self.start(
                        u,
                        Op::Subscribe {
                            slot,
                            refresh: false,
                        },
                        Gate::Free,
                    );
                    return;
                }
            }
            Op::Unsubscribe { slot } => {
                let h = &mut self.users[u].subs[slot];
                h.busy = false;
                h.state = HeldState::Idle;
                h.dialog = None;
            }
            Op::CycleSubscribe(id) | Op::CycleUnsubscribe(id) => {
                if let Some(c) = self.cycles.get_mut(&id) {
                    c.failed = true;
                }
                let unsub = matches!(op, Op::CycleUnsubscribe(_));
                let has_dialog = self.cycles.get(&id).is_some_and(|c| c.dialog.is_some());
                if !unsub && has_dialog {
                    // Established by a NOTIFY although the SUBSCRIBE failed: end it.
                    self.cycle_unsubscribe(id);
                } else {
                    self.cycle_end(id, Instant::now());
                }
            }
        }
        self.ended(u, ctx);
    }

    pub(super) fn timer(&mut self, t: Timer, now: Instant) {
        let phase = self.run.sip_phase.get();
        match t {
            Timer::Retransmit(branch) => {
                let Some(txn) = self.txns.get_mut(&branch) else {
                    return;
                };
                if now >= txn.deadline {
                    let Some(txn) = self.txns.remove(&branch) else {
                        return;
                    };
                    self.run
                        .sip
                        .borrow_mut()
                        .codes
                        .add(format!("{} timeout", txn.method), 1);
                    self.failed(txn.user, txn.op, txn.ctx, "timeout");
                    return;
                }
                tracing::debug!(
                    method = %txn.method,
                    dest = %txn.dest,
                    branch = %branch,
                    after_ms = (now - txn.ctx.started).as_millis() as u64,
                    "retransmitting"
                );
                let (bytes, dest) = (txn.bytes.clone(), txn.dest);
                self.transmit(&bytes, dest);
                let Some(txn) = self.txns.get_mut(&branch) else {
                    return;
                };
                let next = (now + txn.interval).min(txn.deadline);
                txn.interval = (txn.interval * 2).min(T2);
                txn.timer = self.timers.schedule(next, Timer::Retransmit(branch));
            }
            Timer::RefreshPublish(u) => {
                self.users[u].pub_timer = None;
                if phase != SipPhase::Logout && !self.users[u].pub_busy {
                    self.start(u, Op::Publish(PubKind::Refresh), Gate::Free);
                }
            }
            Timer::RefreshSubscribe(u, slot) => {
                let h = &mut self.users[u].subs[slot];
                h.timer = None;
                if phase != SipPhase::Logout && !h.busy {
                    self.start(
                        u,
                        Op::Subscribe {
                            slot,
                            refresh: true,
                        },
                        Gate::Free,
                    );
                }
            }
            Timer::Resubscribe(u, slot) => {
                let h = &mut self.users[u].subs[slot];
                h.timer = None;
                if phase != SipPhase::Logout && !h.busy && h.state == HeldState::Idle {
                    self.start(
                        u,
                        Op::Subscribe {
                            slot,
                            refresh: false,
                        },
                        Gate::Free,
                    );
                }
            }
            Timer::CycleWait(id) => {
                if let Some(c) = self.cycles.get_mut(&id) {
                    c.timer = None;
                    if !c.unsubscribing {
                        c.failed = true;
                        self.run.error("cycle_no_notify", || {
                            format!("no NOTIFY within {CYCLE_NOTIFY_WAIT:?} of the SUBSCRIBE's 2xx")
                        });
                        self.cycle_unsubscribe(id);
                    }
                }
            }
        }
    }
}

/// The dialog a SUBSCRIBE's 2xx establishes (RFC 3261 §12.1.2): the To tag, the Contact as
/// remote target and the Record-Route set reversed.
fn dialog_from_response(resp: &Response) -> Option<Dialog> {
    let remote_tag = resp.base.to.tag()?.to_string();
    let remote_target = resp.header("Contact").and_then(contact_uri)?;
    let mut routes: Vec<String> = resp
        .headers("Record-Route")
        .into_iter()
        .flat_map(message::split_list)
        .map(str::to_string)
        .collect();
    routes.reverse();
    Some(Dialog {
        remote_tag,
        remote_target,
        routes,
    })
}

/// Where a response to a request with this top Via goes (RFC 3261 §18.2.2, RFC 3581): an IP
/// literal target, else the source.
fn response_dest(via: &message::Via, src: SocketAddr) -> SocketAddr {
    let (host, port) = via.response_target();
    host.parse()
        .map(|ip| SocketAddr::new(ip, port))
        .unwrap_or(src)
}
