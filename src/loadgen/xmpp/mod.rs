//! XMPP virtual users: one local task per user owning its TCP stream. A user logs in
//! (RFC 6120: stream, STARTTLS when the server requires it, SASL SCRAM or PLAIN, restart,
//! bind, session if required), gets its roster and sends initial presence (RFC 6121 §2.1.3,
//! §4.2), then serves commands (measured updates, roster setup) and the server's stanzas
//! (roster pushes, subscription requests, pings, the cxfr redirect, stream errors) until the
//! orchestrator lets go of it; then it closes its stream (RFC 6120 §4.4).
//!
//! Measured presence is counted from raw bytes ([`xmpp_wire::scan_marker`]); only the
//! stanzas that need an answer are parsed into trees.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at};

use crate::loadgen::error::LoadgenError;
use crate::loadgen::options::{ring, ring_forward};
use crate::loadgen::run::{now_ns, Cmd, Run, LOGOUT_MAX};
use crate::loadgen::xmpp_wire::{self as wire, FrameKind, Marker, Stanza, Subscription};
use crate::xml::Element;

mod conn;

use conn::*;

/// A roster subscription cycle unanswered this long is counted failed.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);

/// One login and logout of XMPP user `slot` at the target, under the login gate
/// (`--login-rounds`); the time from connect to bound resource.
pub(crate) async fn login_once(run: Rc<Run>, slot: usize) -> Result<Duration, LoadgenError> {
    let _permit = run.login_gate.acquire().await.ok();
    let t = Instant::now();
    let conn = login(&run, slot, &run.set.opts.xmpp).await?;
    let took = t.elapsed();
    match logout(&run, conn).await {
        End::Failed(e) => Err(e),
        _ => Ok(took),
    }
}

/// How a session ended.
enum End {
    /// The orchestrator let go: the stream was closed.
    Logout,
    /// The server sent the user elsewhere.
    Redirect(&'static str, String),
    /// Something broke.
    Failed(LoadgenError),
}

/// One virtual user's state across its sessions.
struct User {
    slot: usize,
    index: u64,
    ring: Vec<usize>,
    forward: Vec<usize>,
    /// Roster items of run users: slot → (subscription, ask).
    roster: HashMap<usize, (Subscription, bool)>,
    /// Online-or-not contacts that receive our presence (`from`/`both`).
    watchers: Vec<usize>,
    /// Contacts we asked for subscription this run.
    asked: HashSet<usize>,
    setup: bool,
    setup_done: bool,
    /// Counted once: the first time the roster arrived.
    resolved: bool,
    seq: u64,
    out: Vec<u8>,
    /// The roster subscription cycle in flight ([`Cmd::Subscribe`]): contact, sent at.
    cycle: Option<(usize, Instant)>,
    cycles: u64,
}

impl User {
    fn new(run: &Run, slot: usize) -> User {
        let n = run.set.n_xmpp;
        let h = run.set.half_ring;
        User {
            slot,
            index: run.set.index(slot),
            ring: ring(slot, n, h),
            forward: ring_forward(slot, n, h),
            roster: HashMap::new(),
            watchers: Vec::new(),
            asked: HashSet::new(),
            setup: false,
            setup_done: false,
            resolved: false,
            seq: 0,
            out: Vec::with_capacity(256),
            cycle: None,
            cycles: 0,
        }
    }

    fn jid(run: &Run, slot: usize) -> String {
        format!("{}@{}", run.set.name(slot), run.set.opts.domain)
    }

    fn sub(&self, c: usize) -> (Subscription, bool) {
        self.roster
            .get(&c)
            .copied()
            .unwrap_or((Subscription::None, false))
    }

    /// Asks `c` for subscription unless we already see it or asked.
    fn subscribe(&mut self, run: &Run, c: usize) {
        let (sub, ask) = self.sub(c);
        if sub.we_see_contact() || ask || !self.asked.insert(c) {
            return;
        }
        wire::write_presence_to(&mut self.out, &User::jid(run, c), "subscribe");
    }

    fn apply_roster(&mut self, run: &Run, items: Vec<wire::RosterItem>) {
        let domain = &run.set.opts.domain;
        for it in items {
            let Some(c) = wire::local_part(&it.jid, domain).and_then(|l| run.slot_of(l)) else {
                continue;
            };
            if c >= run.set.n_xmpp {
                continue;
            }
            if it.subscription == Subscription::Remove {
                self.roster.remove(&c);
            } else {
                self.roster.insert(c, (it.subscription, it.ask));
            }
        }
        self.watchers = self
            .roster
            .iter()
            .filter(|(_, (s, _))| s.contact_sees_us())
            .map(|(c, _)| *c)
            .collect();
        self.watchers.sort_unstable();
        // The roster shows the cycle's contact approved us (RFC 6121 §3.1.5: the approval
        // comes as a roster push as well as `subscribed`). It may be the only sign of it: an
        // approval that came while a move closed our stream reaches us in the roster the new
        // home gives at login, or in its push once the old home's record is merged there.
        if let Some((c, _)) = self.cycle {
            if self.sub(c).0.we_see_contact() {
                self.subscribed(run, c);
            }
        }
        if self.setup {
            // A contact that subscribed to us (and was approved, maybe by the server) gets a
            // request back, so that the item becomes `both`.
            for i in 0..self.ring.len() {
                let c = self.ring[i];
                if self.sub(c).0 == Subscription::From {
                    self.subscribe(run, c);
                }
            }
            self.check_setup(run);
        }
    }

    fn check_setup(&mut self, run: &Run) {
        if self.setup
            && !self.setup_done
            && self
                .ring
                .iter()
                .all(|c| self.sub(*c).0 == Subscription::Both)
        {
            self.setup_done = true;
            run.stats.borrow_mut().setup_complete += 1;
        }
    }

    fn start_setup(&mut self, run: &Run) {
        self.setup = true;
        for i in 0..self.forward.len() {
            let c = self.forward[i];
            self.subscribe(run, c);
        }
        self.check_setup(run);
    }

    /// Starts a roster subscription cycle with an online user 1–4 places along (RFC 6121
    /// §3.1.1), unless one is in flight; the contact approves it, `subscribed` ends the
    /// measured part and we `unsubscribe` (§3.3.1), so rosters stay small.
    fn start_cycle(&mut self, run: &Run) {
        if let Some((_, at)) = self.cycle {
            if at.elapsed() < SUBSCRIBE_WAIT {
                run.stats
                    .borrow_mut()
                    .errors
                    .add("xmpp_subscribe_backlog", 1);
                return;
            }
            self.cycle = None;
            let mut s = run.stats.borrow_mut();
            s.xmpp_subscribe.failed += 1;
            s.error("xmpp_subscribe_timeout", || {
                format!("no <presence type='subscribed'/> within {SUBSCRIBE_WAIT:?}")
            });
        }
        let n = run.set.n_xmpp;
        if n < 2 {
            return;
        }
        let offset = 1 + (self.cycles % 4) as usize;
        self.cycles += 1;
        let contact = (0..n)
            .map(|i| (self.slot + offset + i) % n)
            .find(|&c| c != self.slot && run.online[c].get());
        let Some(c) = contact else { return };
        // Each cycle starts from no subscription: the `unsubscribe` that ended an earlier
        // cycle with this contact is lost when it crosses a see-other-host (the server closes
        // the stream, RFC 6120 §4.9.3.19), and a request for a subscription we already have
        // gets no answer (RFC 6121 §3.1.6). Without one to cancel, it changes nothing.
        wire::write_presence_to(&mut self.out, &User::jid(run, c), "unsubscribe");
        wire::write_presence_to(&mut self.out, &User::jid(run, c), "subscribe");
        self.cycle = Some((c, Instant::now()));
        run.stats.borrow_mut().xmpp_subscribe.sent += 1;
    }

    /// `subscribed` from `c`: the cycle's answer (measured), then `unsubscribe`.
    fn subscribed(&mut self, run: &Run, c: usize) {
        let Some((want, at)) = self.cycle else { return };
        if want != c {
            return;
        }
        self.cycle = None;
        {
            let mut s = run.stats.borrow_mut();
            s.xmpp_subscribe.ok += 1;
            s.xmpp_subscribe.ok_in_window += u64::from(run.in_window(Instant::now()));
            s.xmpp_subscribe.latency.record(at.elapsed());
        }
        wire::write_presence_to(&mut self.out, &User::jid(run, c), "unsubscribe");
    }

    /// Writes `n` measured updates into the output buffer, counting those in the step (and,
    /// per receiver, what it should get).
    fn write_updates(&mut self, run: &Run, n: u32) {
        let mut counted = 0u64;
        {
            let mut step = run.step.borrow_mut();
            for _ in 0..n {
                self.seq += 1;
                let nanos = now_ns();
                wire::write_update(
                    &mut self.out,
                    Marker {
                        sender: self.index,
                        seq: self.seq,
                        nanos,
                    },
                );
                if step.counts(nanos) {
                    step.sent += 1;
                    counted += 1;
                }
            }
        }
        if counted > 0 {
            let mut expected = 0;
            for &c in &self.watchers {
                if run.online[c].get() {
                    expected += counted;
                    let e = &run.rx_expected[c];
                    e.set(e.get() + counted);
                }
            }
            run.step.borrow_mut().expected += expected;
        }
    }

    /// Handles a parsed stanza; `Some` ends the session.
    fn handle(&mut self, run: &Run, el: &Element) -> Option<End> {
        match el.name.as_str() {
            "error" if el.ns == wire::STREAM_NS => Some(match stream_error(el) {
                LoadgenError::Redirect { kind, to } => End::Redirect(kind, to),
                e => End::Failed(e),
            }),
            "iq" => self.handle_iq(run, el),
            "presence" if el.attr("type") == Some("subscribed") => {
                let c = el
                    .attr("from")
                    .and_then(|f| f.split('/').next())
                    .and_then(|bare| wire::local_part(bare, &run.set.opts.domain))
                    .and_then(|l| run.slot_of(l));
                if let Some(c) = c {
                    self.subscribed(run, c);
                }
                None
            }
            "presence" if el.attr("type") == Some("subscribe") => {
                // Approve every request (RFC 6121 §3.1.4); in roster setup, ask ring contacts
                // back so that both sides become `both`.
                let bare = el
                    .attr("from")
                    .unwrap_or("")
                    .split('/')
                    .next()
                    .unwrap_or("");
                if !bare.is_empty() {
                    wire::write_presence_to(&mut self.out, bare, "subscribed");
                    let c =
                        wire::local_part(bare, &run.set.opts.domain).and_then(|l| run.slot_of(l));
                    if let Some(c) = c.filter(|c| self.setup && self.ring.contains(c)) {
                        self.subscribe(run, c);
                    }
                }
                None
            }
            _ => None,
        }
    }

    fn handle_iq(&mut self, run: &Run, el: &Element) -> Option<End> {
        let kind = el.attr("type").unwrap_or("");
        match kind {
            "result" | "error" if el.attr("id") == Some("roster1") => {
                if kind == "result" {
                    if let Some(items) = wire::roster_items(el) {
                        self.apply_roster(run, items);
                    }
                } else {
                    run.error("roster_get_failed", || wire::stanza_error_condition(el));
                }
                run.online[self.slot].set(true);
                if !self.resolved {
                    self.resolved = true;
                    let mut s = run.stats.borrow_mut();
                    s.ready += 1;
                    s.login_resolved += 1;
                }
            }
            "set" => {
                if let Some(server) = wire::cxfr_server(el) {
                    wire::write_iq_result(&mut self.out, el);
                    return Some(End::Redirect("cxfr", server));
                }
                let from_us = el.attr("from").is_none_or(|f| {
                    f.split('/')
                        .next()
                        .unwrap_or("")
                        .eq_ignore_ascii_case(&User::jid(run, self.slot))
                });
                // A push counts only from our own account (RFC 6121 §2.1.6).
                if let Some(items) = wire::roster_items(el).filter(|_| from_us) {
                    wire::write_iq_result(&mut self.out, el);
                    self.apply_roster(run, items);
                } else {
                    wire::write_iq_unavailable(&mut self.out, el);
                }
            }
            "get" => {
                if el.has_child("ping", wire::PING_NS) {
                    wire::write_iq_result(&mut self.out, el);
                } else {
                    wire::write_iq_unavailable(&mut self.out, el);
                }
            }
            _ => {}
        }
        None
    }
}

/// Handles every complete frame in the buffer; `Some` ends the session.
fn process(run: &Run, user: &mut User, conn: &mut Conn) -> Result<Option<End>, LoadgenError> {
    let now = now_ns();
    let mut late = 0u64;
    let result = loop {
        let Some((kind, s, e)) = conn.next()? else {
            break None;
        };
        if kind == FrameKind::Close {
            break Some(End::Failed(LoadgenError::Closed));
        }
        let bytes = &conn.buf[s..e];
        match wire::classify(bytes) {
            Stanza::Presence => {
                if let Some(m) = wire::scan_marker(bytes) {
                    if m.sender == user.index {
                        // Our own update, echoed to our resource (RFC 6121 §4.4.2).
                        continue;
                    }
                    let mut step = run.step.borrow_mut();
                    if step.counts(m.nanos) {
                        step.received += 1;
                        let r = &run.rx_received[user.slot];
                        r.set(r.get() + 1);
                        step.latency
                            .record(Duration::from_nanos(now.saturating_sub(m.nanos)));
                    } else {
                        late += 1;
                    }
                    continue;
                }
                if !wire::start_tag_has_type(bytes) {
                    continue;
                }
            }
            Stanza::Message => continue,
            _ => {}
        }
        let el = wire::parse_element(&conn.header, bytes).map_err(LoadgenError::Xml)?;
        if let Some(end) = user.handle(run, &el) {
            break Some(end);
        }
    };
    if late > 0 {
        run.stats.borrow_mut().late += late;
    }
    Ok(result)
}

/// Roster get and initial presence, then commands and stanzas until the end.
async fn session(
    run: &Run,
    user: &mut User,
    mut conn: Conn,
    cmds: &mut mpsc::Receiver<Cmd>,
) -> End {
    user.out.extend_from_slice(&wire::roster_get("roster1"));
    user.out.extend_from_slice(b"<presence/>");
    loop {
        match process(run, user, &mut conn) {
            Ok(None) => {}
            Ok(Some(end)) => {
                if matches!(end, End::Redirect(..)) {
                    // Leave politely (RFC 6120 §4.4): answers first, then our close.
                    user.out.extend_from_slice(b"</stream:stream>");
                }
                if !user.out.is_empty() {
                    let _ = conn.send(&user.out).await;
                    user.out.clear();
                }
                return end;
            }
            Err(e) => return End::Failed(e),
        }
        if !user.out.is_empty() {
            if let Err(e) = conn.send(&user.out).await {
                return End::Failed(e);
            }
            user.out.clear();
        }
        tokio::select! {
            r = conn.read_more() => match r {
                Ok(0) => return End::Failed(LoadgenError::Closed),
                Ok(_) => {}
                Err(e) => return End::Failed(LoadgenError::Io(e)),
            },
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Updates(n)) => user.write_updates(run, n),
                Some(Cmd::Setup) => user.start_setup(run),
                Some(Cmd::Subscribe) => user.start_cycle(run),
                None => {
                    run.online[user.slot].set(false);
                    return logout(run, conn).await;
                }
            },
        }
    }
}

/// Closes the stream (RFC 6120 §4.4) and waits, bounded, for the server's close.
async fn logout(run: &Run, mut conn: Conn) -> End {
    if let Err(e) = conn.send(b"</stream:stream>").await {
        return End::Failed(e);
    }
    let deadline = tokio::time::Instant::now() + LOGOUT_MAX;
    loop {
        loop {
            match conn.next() {
                Ok(Some((FrameKind::Close, _, _))) => return End::Logout,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return End::Logout,
            }
        }
        match timeout_at(deadline, conn.read_more()).await {
            Err(_) => {
                run.error("logout_timeout", || {
                    "no </stream:stream> from the server".into()
                });
                return End::Logout;
            }
            Ok(Ok(0)) | Ok(Err(_)) => return End::Logout,
            Ok(Ok(_)) => {}
        }
    }
}

/// One XMPP virtual user, from login to logout.
pub(super) async fn user_task(run: Rc<Run>, slot: usize, mut cmds: mpsc::Receiver<Cmd>) {
    let mut user = User::new(&run, slot);
    let mut permit = run.login_gate.acquire().await.ok();
    let t0 = Instant::now();
    let mut target = run.set.opts.xmpp.clone();
    let mut redirects = 0;
    let mut logged_in = false;
    let follow = run.set.opts.follow_redirects;
    loop {
        if run.stop.get() && !logged_in {
            break;
        }
        let end = match login(&run, slot, &target).await {
            Ok(conn) => {
                if !logged_in {
                    logged_in = true;
                    permit = None;
                    let mut s = run.stats.borrow_mut();
                    s.logins_ok += 1;
                    s.login_latency.record(t0.elapsed());
                    s.last_login = Some(Instant::now());
                }
                session(&run, &mut user, conn, &mut cmds).await
            }
            Err(LoadgenError::Redirect { kind, to }) => End::Redirect(kind, to),
            Err(e) => End::Failed(e),
        };
        run.online[slot].set(false);
        match end {
            End::Logout => break,
            End::Redirect(kind, to) => {
                if follow && redirects < MAX_REDIRECTS {
                    redirects += 1;
                    {
                        let mut s = run.stats.borrow_mut();
                        if kind == "cxfr" {
                            s.cxfr += 1;
                        } else {
                            s.see_other_host += 1;
                        }
                    }
                    target = redirect_target(&to, &target);
                    continue;
                }
                let e = if follow {
                    LoadgenError::Protocol("too many redirects")
                } else {
                    LoadgenError::Redirect { kind, to }
                };
                fail(&run, &mut user, logged_in, &e);
                break;
            }
            End::Failed(e) => {
                fail(&run, &mut user, logged_in, &e);
                break;
            }
        }
    }
    drop(permit);
    run.online[slot].set(false);
    let mut s = run.stats.borrow_mut();
    if !user.resolved {
        user.resolved = true;
        s.login_resolved += 1;
        if !logged_in {
            s.logins_failed += 1;
        }
    }
    s.finished += 1;
}

fn fail(run: &Run, user: &mut User, logged_in: bool, e: &LoadgenError) {
    let mut s = run.stats.borrow_mut();
    s.fail(e);
    if !logged_in && !user.resolved {
        user.resolved = true;
        s.login_resolved += 1;
        s.logins_failed += 1;
    }
}

/// Registers user `slot` (bounded by the login concurrency and [`LOGIN_TIMEOUT`]).
pub(super) async fn register_task(run: Rc<Run>, slot: usize) {
    let _permit = run.login_gate.acquire().await.ok();
    let r = timeout(LOGIN_TIMEOUT, register(&run, slot))
        .await
        .unwrap_or(Err(LoadgenError::Timeout("registration")));
    let mut s = run.stats.borrow_mut();
    match r {
        Ok(Registered::Created) => s.reg_ok += 1,
        Ok(Registered::Existing) => s.reg_existing += 1,
        Err(e) => {
            s.reg_failed += 1;
            s.fail(&e);
        }
    }
    s.reg_done += 1;
}

#[cfg(test)]
mod tests {
    use super::conn::redirect_target;

    #[test]
    fn redirect_targets() {
        assert_eq!(redirect_target("10.0.0.2:5223", "a:5222"), "10.0.0.2:5223");
        assert_eq!(redirect_target("node2", "a:5300"), "node2:5300");
        assert_eq!(redirect_target("::1", "a:5300"), "[::1]:5300");
        assert_eq!(redirect_target("[::1]:5400", "a:5300"), "[::1]:5400");
    }
}
