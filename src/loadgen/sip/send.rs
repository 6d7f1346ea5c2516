//! Sending: starting an operation, building its request (RFC 3261 §8.1.1, RFC 3903 §4,
//! RFC 6665 §4.1.2) and putting it on the wire.

use super::*;

impl Engine {
    /// Starts a logical request (counted once however often it is retried).
    pub(super) fn start(&mut self, u: usize, op: Op, gate: Gate) {
        {
            let mut s = self.run.sip.borrow_mut();
            match op {
                Op::Publish(_) => s.publish.sent += 1,
                Op::Subscribe { .. } | Op::Unsubscribe { .. } => s.subscribe.sent += 1,
                Op::CycleSubscribe(_) | Op::CycleUnsubscribe(_) => {}
            }
        }
        match op {
            Op::Publish(_) => self.users[u].pub_busy = true,
            Op::Subscribe { slot, .. } | Op::Unsubscribe { slot } => {
                self.users[u].subs[slot].busy = true
            }
            _ => {}
        }
        self.send(
            u,
            op,
            OpCtx {
                started: Instant::now(),
                auth_tries: 0,
                retries: 0,
                gate,
            },
        );
    }

    /// Builds and sends `op`'s request as a new client transaction.
    pub(super) fn send(&mut self, u: usize, op: Op, ctx: OpCtx) {
        let branch = new_branch();
        let Some((op, bytes, dest)) = self.build(u, op, &branch) else {
            self.failed(u, op, ctx, "not_applicable");
            return;
        };
        self.transmit(&bytes, dest);
        let now = Instant::now();
        let timer = self
            .timers
            .schedule(now + T1, Timer::Retransmit(branch.clone()));
        self.txns.insert(
            branch,
            Txn {
                user: u,
                op,
                method: op.method(),
                bytes,
                dest,
                interval: T1,
                deadline: now + TIMER_F,
                ctx,
                timer,
            },
        );
    }

    /// Sends a datagram; a failure is counted (a request is retransmitted by its timer).
    pub(super) fn transmit(&self, bytes: &[u8], dest: SocketAddr) {
        if let Err(e) = self.out.send_to(bytes, dest) {
            self.run
                .error(format!("sip_send_{:?}", e.kind()).to_lowercase(), || {
                    format!("sending to {dest}: {e}")
                });
        }
    }

    /// The request for `op` (the op itself may change: a modify without an entity-tag is an
    /// initial PUBLISH). `None` when it no longer applies (no dialog to end).
    pub(super) fn build(
        &mut self,
        u: usize,
        op: Op,
        branch: &str,
    ) -> Option<(Op, Bytes, SocketAddr)> {
        let domain = self.domain.clone();
        let via = self.via.clone();
        let user = &mut self.users[u];
        let expires_value = |user: &SipUser| EXPIRES.max(user.min_expires).to_string();
        let contact = format!("<sip:{}@{via}>", user.name);
        let mut headers: Vec<(&str, String)> = Vec::with_capacity(8);
        let (op, uri, to, from, call_id, cseq, body, dest) = match op {
            Op::Publish(kind) => {
                let kind = match (kind, &user.etag) {
                    (PubKind::Remove, None) => return None,
                    (PubKind::Modify | PubKind::Refresh, None) => PubKind::Initial,
                    (k, _) => k,
                };
                user.pub_cseq += 1;
                headers.push(("Event", "presence".into()));
                let exp = if kind == PubKind::Remove {
                    "0".to_string()
                } else {
                    expires_value(user)
                };
                headers.push(("Expires", exp));
                if kind != PubKind::Initial {
                    headers.push(("SIP-If-Match", user.etag.clone().unwrap_or_default()));
                }
                let body = match kind {
                    PubKind::Initial | PubKind::Modify => {
                        user.pub_seq += 1;
                        // Not the XMPP marker (`lg …`): a server that maps the note to an
                        // XMPP status (RFC 8048) must not make it count as an XMPP delivery.
                        let note = format!(
                            "lg-sip {} {} {}",
                            self.run.set.index(user.slot),
                            user.pub_seq,
                            now_ns()
                        );
                        Some((
                            crate::pidf::CONTENT_TYPE,
                            pidf_body(&user.name, &domain, &note),
                        ))
                    }
                    _ => None,
                };
                (
                    Op::Publish(kind),
                    user.aor.clone(),
                    format!("<{}>", user.aor),
                    format!("<{}>;tag={}", user.aor, user.pub_tag),
                    user.pub_call_id.clone(),
                    user.pub_cseq,
                    body,
                    user.target,
                )
            }
            Op::Subscribe { slot, refresh } => {
                let target_aor = format!(
                    "sip:{}@{domain}",
                    self.run.set.name(self.n_xmpp + user.subs[slot].target)
                );
                let expires = expires_value(user);
                let h = &mut user.subs[slot];
                let in_dialog = refresh && h.dialog.is_some();
                if !in_dialog {
                    if !h.call_id.is_empty() {
                        self.dialogs.remove(&h.call_id);
                    }
                    h.call_id = format!("{}@lg", new_tag());
                    h.local_tag = new_tag();
                    h.dialog = None;
                    h.state = HeldState::Idle;
                    self.dialogs
                        .insert(h.call_id.clone(), DialogRef::Held(u, slot));
                }
                h.cseq += 1;
                let (uri, to, dest) =
                    dialog_addressing(h.dialog.as_ref(), &target_aor, user.target);
                subscribe_headers(&mut headers, h.dialog.as_ref(), contact, true, expires);
                let h = &user.subs[slot];
                (
                    Op::Subscribe {
                        slot,
                        refresh: in_dialog,
                    },
                    uri,
                    to,
                    format!("<{}>;tag={}", user.aor, h.local_tag),
                    h.call_id.clone(),
                    h.cseq,
                    None,
                    dest,
                )
            }
            Op::Unsubscribe { slot } => {
                let target_aor = format!(
                    "sip:{}@{domain}",
                    self.run.set.name(self.n_xmpp + user.subs[slot].target)
                );
                let h = &mut user.subs[slot];
                let d = h.dialog.as_ref()?;
                h.cseq += 1;
                let (uri, to, dest) = dialog_addressing(Some(d), &target_aor, user.target);
                subscribe_headers(&mut headers, Some(d), contact, false, "0".into());
                (
                    op,
                    uri,
                    to,
                    format!("<{}>;tag={}", user.aor, h.local_tag),
                    h.call_id.clone(),
                    h.cseq,
                    None,
                    dest,
                )
            }
            Op::CycleSubscribe(id) | Op::CycleUnsubscribe(id) => {
                let unsub = matches!(op, Op::CycleUnsubscribe(_));
                let c = self.cycles.get_mut(&id)?;
                let target_aor =
                    format!("sip:{}@{domain}", self.run.set.name(self.n_xmpp + c.target));
                if !unsub && c.call_id.is_empty() {
                    c.call_id = format!("{}@lg", new_tag());
                    c.local_tag = new_tag();
                    self.dialogs.insert(c.call_id.clone(), DialogRef::Cycle(id));
                }
                if unsub && c.dialog.is_none() {
                    return None;
                }
                c.cseq += 1;
                let (uri, to, dest) =
                    dialog_addressing(c.dialog.as_ref(), &target_aor, user.target);
                let expires = if unsub {
                    "0".into()
                } else {
                    expires_value(user)
                };
                subscribe_headers(&mut headers, c.dialog.as_ref(), contact, true, expires);
                (
                    op,
                    uri,
                    to,
                    format!("<{}>;tag={}", user.aor, c.local_tag),
                    c.call_id.clone(),
                    c.cseq,
                    None,
                    dest,
                )
            }
        };
        let method = op.method();
        if let Some(a) = &mut user.auth {
            a.nc += 1;
            let value = a.challenge.authorization(
                &user.name,
                &user.password,
                method.as_str(),
                &uri,
                a.nc,
                &new_tag(),
            );
            headers.push((
                if a.proxy {
                    "Proxy-Authorization"
                } else {
                    "Authorization"
                },
                value,
            ));
        }
        let req = Request {
            method,
            uri: &uri,
            via: &via,
            branch,
            from: &from,
            to: &to,
            call_id: &call_id,
            cseq,
        };
        Some((op, req.build(&headers, body), dest))
    }
}

/// The headers of a SUBSCRIBE (RFC 6665 §4.1.2, RFC 3856 §5): the dialog's route set, our
/// Contact, `Event: presence`, `Accept: application/pidf+xml` when `accept`, `Expires`.
fn subscribe_headers(
    headers: &mut Vec<(&str, String)>,
    dialog: Option<&Dialog>,
    contact: String,
    accept: bool,
    expires: String,
) {
    for r in dialog.iter().flat_map(|d| d.routes.iter()) {
        headers.push(("Route", r.clone()));
    }
    headers.push(("Contact", contact));
    headers.push(("Event", "presence".into()));
    if accept {
        headers.push(("Accept", crate::pidf::CONTENT_TYPE.into()));
    }
    headers.push(("Expires", expires));
}

/// Request-URI, To and destination of a request: in the dialog when there is one
/// (RFC 3261 §12.2.1.1), else to the presentity through the user's server.
fn dialog_addressing(
    dialog: Option<&Dialog>,
    target_aor: &str,
    server: SocketAddr,
) -> (String, String, SocketAddr) {
    match dialog {
        Some(d) => {
            let dest = d
                .routes
                .first()
                .and_then(|r| contact_uri(r))
                .and_then(|u| uri_addr(&u))
                .or_else(|| uri_addr(&d.remote_target))
                .unwrap_or(server);
            (
                d.remote_target.clone(),
                format!("<{target_aor}>;tag={}", d.remote_tag),
                dest,
            )
        }
        None => (target_aor.to_string(), format!("<{target_aor}>"), server),
    }
}
