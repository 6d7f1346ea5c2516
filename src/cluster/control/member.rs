//! The member side of the control plane (DESIGN.md §3, §5, §6): joining the primary (an
//! INVITE, retried with backoff unless the primary refuses us), the reservations and moves
//! the primary sends (`redirection-usr-addr`, `migrate-user`), the load report, the
//! write-through of a user's record (`user-update`), and the replica of the cluster state
//! from the state subscription (`SUBSCRIBE` to `sip:cluster@primary`, full snapshot in
//! chunks, then deltas), which keeps the view's directory and the servers' liveness.

use std::collections::BTreeSet;
use std::time::Duration;

use tracing::{debug, error, info, warn};

use crate::cluster::ccmp::{CcmpRequest, Element};
use crate::cluster::dialog::{self, Dialog};
use crate::cluster::record;
use crate::cluster::state::{ClusterState, Kind, Replica};
use crate::sip::message::{Method, Request, Response};

use super::client::ccmp_body;
use super::context::STATE_EXPIRES;
use super::effect::{Answer, Effect, HubCall, Out, Outgoing, Ticket, Timer};
use super::error::ControlError;
use super::monitor::Reported;
use super::sessions::{self, Extra};
use super::shared::Shared;

/// The first wait before joining again after a failed INVITE; it doubles up to
/// [`JOIN_BACKOFF_MAX`].
pub const JOIN_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait between two joins.
pub const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The wait before subscribing again to the cluster state after a failed SUBSCRIBE.
pub const SUBSCRIBE_RETRY: Duration = Duration::from_secs(2);

/// When the state subscription is refreshed: at 9/10 of its [`STATE_EXPIRES`]
/// (RFC 6665 §4.1.2.2).
pub const STATE_REFRESH: Duration = Duration::from_secs(STATE_EXPIRES as u64 * 9 / 10);

/// What a member's request continues with.
#[derive(Debug)]
pub enum Pending {
    /// The INVITE joining the primary, with the dialog it starts.
    Join(Dialog),
    /// The SUBSCRIBE to the cluster state, by Call-ID.
    Subscribe(String),
    /// A load report, with the user set it carried.
    Report(Reported),
    /// A write-through of `user` for the caller of `ticket`.
    WriteThrough {
        /// The caller.
        ticket: Ticket,
        /// Local part.
        user: String,
    },
}

/// A member's state.
#[derive(Debug)]
pub struct Member {
    primary_id: Option<String>,
    backoff: Duration,
    refused: bool,
    replica: Replica,
    state_dialog: Option<Dialog>,
    /// Servers listed by the last complete state document: one that disappears from it is
    /// dead or gone (DESIGN.md §5, §6).
    servers_seen: BTreeSet<String>,
}

impl Default for Member {
    fn default() -> Self {
        Member {
            primary_id: None,
            backoff: JOIN_BACKOFF,
            refused: false,
            replica: Replica::new(),
            state_dialog: None,
            servers_seen: BTreeSet::new(),
        }
    }
}

impl Member {
    /// Not joined.
    pub fn new() -> Self {
        Self::default()
    }

    /// The primary's id while a session with it is up.
    pub fn primary_id(&self) -> Option<&str> {
        self.primary_id.as_deref()
    }

    /// The cluster state as the replica holds it.
    pub fn state(&self) -> ClusterState {
        self.replica.snapshot()
    }

    /// Joins the primary (DESIGN.md §5) unless joined already or refused.
    pub fn join<P: From<Pending>>(&mut self, sh: &Shared, out: &mut Out<P>) {
        if sh.view.joined() || self.refused {
            return;
        }
        let target = sh
            .view
            .primary()
            .map(|p| p.sip)
            .unwrap_or_else(|| sh.settings.config.primary_sip());
        info!(primary = %target, "joining the cluster");
        let (dialog, invite) = sh.invite(target);
        out.request(invite, Pending::Join(dialog));
    }

    /// The join's outcome (the session is up already when it succeeded): a refusal (403)
    /// stops the joins, anything else is retried with backoff.
    pub fn on_joined<P>(&mut self, result: Result<String, ControlError>, out: &mut Out<P>) {
        match result {
            Ok(id) => {
                info!(primary = %id, "joined the cluster");
                self.backoff = JOIN_BACKOFF;
            }
            Err(ControlError::Refused {
                status: 403,
                reason,
            }) => {
                error!(error = %reason, "the primary refused us (is cluster.secret the same?)");
                self.refused = true;
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?self.backoff, "join failed");
                out.arm(Timer::JoinRetry, self.backoff);
                self.backoff = (self.backoff * 2).min(JOIN_BACKOFF_MAX);
            }
        }
    }

    /// A session with the primary is up: the view names it, and the member subscribes to
    /// the cluster state.
    pub fn session_up<P: From<Pending>>(&mut self, sh: &mut Shared, id: &str, out: &mut Out<P>) {
        if let Some(addrs) = sh.sessions.addrs(id) {
            sh.view.set_primary(addrs);
        }
        self.primary_id = Some(id.to_string());
        sh.view.set_joined(true);
        sh.monitor.report_all();
        self.subscribe(sh, out);
    }

    /// The session with `id` ended: when it was the primary's, this node is no member.
    pub fn session_down(&mut self, sh: &Shared, id: &str) {
        if self.primary_id.as_deref() == Some(id) {
            sh.view.set_joined(false);
            self.primary_id = None;
            self.state_dialog = None;
        }
    }

    /// Subscribes to the cluster state (DESIGN.md §6); the replica starts over.
    pub fn subscribe<P: From<Pending>>(&mut self, sh: &Shared, out: &mut Out<P>) {
        let Some(primary) = sh.view.primary() else {
            return;
        };
        let local = sh.settings.local();
        let mut d = Dialog::outgoing(local, primary.sip);
        let branch = dialog::new_branch();
        let bytes = d.request(
            Method::Subscribe,
            local,
            &branch,
            sh.settings.secret(),
            &[
                ("Event", "presence".into()),
                ("Accept", crate::pidf::CONTENT_TYPE.into()),
                ("Expires", STATE_EXPIRES.to_string()),
            ],
            None,
        );
        let call_id = d.call_id.clone();
        // NOTIFYs may overtake the 200 (another connection): match them by Call-ID now.
        self.state_dialog = Some(d);
        self.replica = Replica::new();
        let request = Outgoing {
            to: primary.sip,
            method: Method::Subscribe,
            branch,
            bytes,
            deadline: sh.settings.timeout(),
        };
        out.request(request, Pending::Subscribe(call_id));
    }

    /// The SUBSCRIBE's outcome: the dialog is confirmed and refreshed before it expires,
    /// or the subscription is tried again soon.
    pub fn on_subscribed<P>(
        &mut self,
        call_id: &str,
        result: Result<Response, ControlError>,
        out: &mut Out<P>,
    ) {
        match result {
            Ok(r) => {
                if let Some(d) = self.state_dialog.as_mut().filter(|d| d.call_id == call_id) {
                    d.confirm(&r);
                }
                out.arm(Timer::Subscribe, STATE_REFRESH);
            }
            Err(e) => {
                warn!(error = %e, "cluster state subscription failed; retrying");
                out.arm(Timer::Subscribe, SUBSCRIBE_RETRY);
            }
        }
    }

    /// A NOTIFY of the state subscription: the replica takes it and, once complete, the
    /// view follows (homes, and servers that left or came back).
    pub fn on_notify<P>(&mut self, sh: &Shared, req: &Request, out: &mut Out<P>) {
        let secret = sh.settings.secret();
        let ours = self
            .state_dialog
            .as_ref()
            .is_some_and(|d| d.call_id == req.base.call_id);
        if !ours {
            let refusal = sessions::refuse(&sh.settings, req, 481, "no such subscription", "");
            return out.push(Effect::Respond(refusal));
        }
        let refused = |out: &mut Out<P>, e: &dyn std::fmt::Display| {
            warn!(error = %e, "cluster state document refused");
            let bytes = sessions::respond(secret, req, 400, "Bad Request", Extra::default());
            out.push(Effect::Respond(bytes));
        };
        let doc = match ClusterState::parse(req.body()) {
            Ok(doc) => doc,
            Err(e) => return refused(out, &e),
        };
        let last_full_chunk = doc.kind == Kind::Full && doc.chunk == doc.chunks;
        // A delta not newer than the replica is ignored by it, and so by the view.
        let delta = (doc.kind == Kind::Delta && doc.version > self.replica.version())
            .then(|| (doc.users.clone(), doc.removed.clone()));
        if let Err(e) = self.replica.apply(doc) {
            return refused(out, &e);
        }
        if let Some((users, removed)) = delta {
            for s in &users {
                for u in &s.users {
                    if sh.view.set_home(&u.user_id, &s.server_id) {
                        out.hub(HubCall::HomeChanged(u.user_id.clone()));
                    }
                }
            }
            for u in &removed {
                if sh.view.remove_home(u) {
                    out.hub(HubCall::HomeChanged(u.clone()));
                }
            }
            self.learn_servers(sh, out);
        } else if last_full_chunk && self.replica.is_complete() {
            let homes = self
                .replica
                .snapshot()
                .users
                .into_iter()
                .flat_map(|s| {
                    let server = s.server_id;
                    s.users
                        .into_iter()
                        .map(move |u| (u.user_id, server.clone()))
                })
                .collect();
            for user in sh.view.replace_homes(homes) {
                out.hub(HubCall::HomeChanged(user));
            }
            self.learn_servers(sh, out);
        }
        let ok = sessions::respond(secret, req, 200, "OK", Extra::signed());
        out.push(Effect::Respond(ok));
    }

    /// A member follows the server list of the complete replica: a server that left it is
    /// dead or removed, one that is back in it lives again (DESIGN.md §5, §6).
    fn learn_servers<P>(&mut self, sh: &Shared, out: &mut Out<P>) {
        if !self.replica.is_complete() {
            return;
        }
        let now: BTreeSet<String> = self
            .replica
            .servers()
            .iter()
            .map(|s| s.id.clone())
            .collect();
        let (gone, back) = server_changes(&self.servers_seen, &now, &sh.settings.me.id);
        for id in gone {
            warn!(node = %id, "the cluster state no longer lists this node: dead or removed");
            sh.mark_dead(&id, out);
        }
        for id in back {
            if sh.view.set_dead(&id, false) {
                info!(node = %id, "the cluster state lists this node again");
            }
        }
        self.servers_seen = now;
    }

    /// INFO at a member: reservations, moves and cluster figures from the primary. The
    /// elements to answer with, or the refusal (code, why).
    pub fn on_info<P>(
        &mut self,
        sh: &mut Shared,
        body: &CcmpRequest,
        out: &mut Out<P>,
    ) -> Result<Vec<Element>, (u16, String)> {
        let mut reply = Vec::new();
        for e in &body.elements {
            match e {
                Element::RedirectionUsrAddr {
                    user,
                    resources,
                    record,
                    moved_from,
                    ..
                } => {
                    let local = user.split('@').next().unwrap_or(user).to_string();
                    if let Some(bytes) = record {
                        // The primary's copy is the durable one: every home writes its
                        // changes through before answering its client (DESIGN.md §3).
                        let rec = record::decode(bytes).map_err(|e| (400, e.to_string()))?;
                        sh.records
                            .import(&local, &rec)
                            .map_err(|e| (409, e.to_string()))?;
                        if moved_from.is_some() {
                            // What the old home changes until it lets the user go comes
                            // as a hand-over, merged against this copy (DESIGN.md §7).
                            out.hub(HubCall::Arriving {
                                user: local.clone(),
                                base: rec,
                            });
                        }
                    }
                    // Already homed here (a returning user): the reservation is refreshed
                    // but the user is not counted twice.
                    let known = !sh.view.reserve(&local, sh.now);
                    if !known {
                        out.hub(HubCall::HomeChanged(local.clone()));
                    }
                    let c = sh.settings.cluster();
                    let cost = c.weight_users + c.weight_resources * u64::from(*resources);
                    sh.monitor.reserve((!known).then_some(cost));
                    info!(user = %local, "user reserved");
                    reply.push(Element::PressvrLoad(vec![sh.own_level()]));
                }
                Element::MigrateUser { user, svr_id } => {
                    // The user leaves us (DESIGN.md §7): the view names its new home first,
                    // then its sessions and subscriptions here are sent there.
                    let local = user.split('@').next().unwrap_or(user).to_string();
                    if *svr_id == sh.settings.me.id {
                        return Err((409, format!("{local} is to move to this very node")));
                    }
                    let Some(to) = sh.view.node(svr_id) else {
                        return Err((409, format!("unknown server {svr_id}")));
                    };
                    if sh.view.moved_away(&local, svr_id) {
                        out.hub(HubCall::HomeChanged(local.clone()));
                    }
                    out.hub(HubCall::Evict {
                        user: local.clone(),
                        to,
                    });
                    sh.forget_live(&local);
                    info!(user = %local, to = %svr_id, "user moved away");
                    reply.push(Element::PressvrLoad(vec![sh.own_level()]));
                }
                Element::MaxLoad(_)
                | Element::MinLoad(_)
                | Element::ActvSvrNums(_)
                | Element::SvrPool(_)
                | Element::PressvrLoad(_) => {}
                other => return Err((409, format!("{} is not supported here yet", other.name()))),
            }
        }
        Ok(reply)
    }

    /// INFO `pressvr-load` (and `pres-sys-users` when the user set changed) to the primary.
    pub fn report<P: From<Pending>>(&mut self, sh: &mut Shared, out: &mut Out<P>) {
        let Some(primary) = self.primary_id.clone() else {
            return;
        };
        let (elements, reported) = sh.monitor.report(&sh.settings.me.id);
        if let Ok(info) = sh.info(&primary, "pressvr-load", elements) {
            out.request(info, Pending::Report(reported));
        }
    }

    /// The report's outcome: once the primary has it, the next carries only changes.
    pub fn on_reported(
        &mut self,
        sh: &mut Shared,
        reported: Reported,
        result: Result<Response, ControlError>,
    ) {
        if result
            .and_then(|r| ccmp_body(sh.settings.secret(), &r))
            .is_ok()
        {
            sh.monitor.acknowledged(reported);
        }
    }

    /// Writes `user`'s record through to the primary (DESIGN.md §3): an in-dialog INFO
    /// `user-update`; the caller of `ticket` gets the outcome.
    pub fn write_through<P: From<Pending>>(
        &mut self,
        sh: &mut Shared,
        user: &str,
        ticket: Ticket,
        out: &mut Out<P>,
    ) {
        let fail = |out: &mut Out<P>, e: ControlError| {
            out.answer(ticket, Answer::WriteThrough(Err(e)));
        };
        let Some(primary) = self.primary_id.clone().filter(|_| sh.view.joined()) else {
            return fail(out, ControlError::NotJoined);
        };
        let record = match sh.records.export(user) {
            Ok(Some(r)) => r,
            Ok(None) => return fail(out, ControlError::NoAccount),
            Err(e) => return fail(out, e),
        };
        let element = Element::UserUpdate {
            user: sh.settings.user_addr(user),
            record: record::encode(&record),
        };
        match sh.info(&primary, "user-update", vec![element]) {
            Ok(info) => out.request(
                info,
                Pending::WriteThrough {
                    ticket,
                    user: user.to_string(),
                },
            ),
            Err(e) => fail(out, e),
        }
    }

    /// The write-through's outcome, for its caller.
    pub fn on_written<P>(
        &mut self,
        sh: &Shared,
        ticket: Ticket,
        user: &str,
        result: Result<Response, ControlError>,
        out: &mut Out<P>,
    ) {
        let result = result
            .and_then(|r| ccmp_body(sh.settings.secret(), &r))
            .map(|_| ());
        // The one caller, `presence::write_through`, reports a failure (and knows when it
        // is expected: the user moved away, DESIGN.md §7).
        match &result {
            Ok(()) => debug!(%user, "record written through"),
            Err(e) => debug!(%user, error = %e, "write-through failed"),
        }
        out.answer(ticket, Answer::WriteThrough(result));
    }
}

/// Compares the server lists of two complete cluster state documents: the servers that left
/// it (dead or removed) and those that joined or came back, each sorted, never `me`.
pub fn server_changes(
    seen: &BTreeSet<String>,
    now: &BTreeSet<String>,
    me: &str,
) -> (Vec<String>, Vec<String>) {
    let gone = seen
        .difference(now)
        .filter(|id| *id != me)
        .cloned()
        .collect();
    let back = now
        .difference(seen)
        .filter(|id| *id != me)
        .cloned()
        .collect();
    (gone, back)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_server_missing_from_the_state_is_gone_and_a_new_one_is_back() {
        let (gone, back) = server_changes(&set(&["p", "w", "x"]), &set(&["p", "w", "y"]), "w");
        assert_eq!(gone, ["x"]);
        assert_eq!(back, ["y"]);
        // Nothing changes: nothing to tell.
        let (gone, back) = server_changes(&set(&["p", "w"]), &set(&["p", "w"]), "w");
        assert!(gone.is_empty() && back.is_empty());
        // The first document lists everyone as new; this node is never reported.
        let (gone, back) = server_changes(&BTreeSet::new(), &set(&["p", "w"]), "w");
        assert!(gone.is_empty());
        assert_eq!(back, ["p"]);
        let (gone, _) = server_changes(&set(&["p", "w"]), &set(&["p"]), "w");
        assert!(
            gone.is_empty(),
            "the primary thinking us dead is not our death"
        );
    }
}
