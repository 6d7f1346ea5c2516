//! What MOE-MP adds to the RFC 6121 roster (DESIGN.md §9, docs/moe-mp.md): server-kept
//! groups — create an empty group, rename a group, delete a group with its members (§3) —
//! and contact-add confirmation: the added contact must confirm before the roster item is
//! created on either side (§4). Methods of the roster core ([`RosterState`]) that also post
//! the two messages of the confirmation between shards ([`ContactFx`]).

use actix::prelude::*;
use bytes::Bytes;
use tracing::warn;

use super::super::context::Ctx;
use super::super::deliver::{deliver_to_available, fan_out_to_user, follow_up_presence};
use super::super::outbox::Outbox;
use super::state::{contact_request_message, RosterFx, RosterState};
use crate::store::{PendingContact, Records, Roster};
use crate::xml::{Element, CLIENT_NS};
use crate::xmpp::jid::Jid;
use crate::xmpp::moe::{self, GroupOp, IqPayload, MoeError};
use crate::xmpp::private;
use crate::xmpp::roster;
use crate::xmpp::stanza::{error_reply, iq_result, StanzaError};
use crate::xmpp::subscription::{SubKind, Subscription};

/// A MOE-MP iq of a bound resource for its own server (groups, contact add/response).
#[derive(Message)]
#[rtype(result = "()")]
pub struct MoeIq {
    /// The sender's full JID.
    pub from: Jid,
    /// The iq.
    pub iq: Element,
    /// Its parsed payload.
    pub payload: IqPayload,
    /// Where the answer goes.
    pub outbox: Outbox,
}

/// A contact-add request arrives at the contact's shard (docs/moe-mp.md §4).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ContactRequestIn {
    /// Local part of the contact.
    pub contact: String,
    /// Bare JID of the requester.
    pub requester: Jid,
    /// What the requester asked for its item.
    pub wish: PendingContact,
}

/// The contact answered a contact-add request; handled in the requester's shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ContactAnswered {
    /// Local part of the requester.
    pub requester: String,
    /// Bare JID of the contact.
    pub contact: Jid,
    /// Accepted or refused.
    pub accepted: bool,
    /// What the requester asked for its item.
    pub wish: PendingContact,
    /// The contact's current presence, to deliver after the roster items exist.
    pub presence: Vec<Bytes>,
}

/// What the MOE-MP roster operations do to the outside, in order.
pub(crate) enum ContactFx {
    /// What the roster core does.
    Roster(RosterFx),
    /// A contact-add request to the contact's shard.
    Request(ContactRequestIn),
    /// The contact's answer to the requester's shard.
    Answered(ContactAnswered),
}

/// Why a MOE iq was refused.
enum Refusal {
    Moe(MoeError),
    Stanza(StanzaError, Option<String>),
}

/// The user's MOE-MP settings as stored in its private XML storage (XEP-0049), or empty
/// ones (docs/moe-mp.md §1).
pub(crate) fn stored_settings(cx: &Ctx<'_>, user: &str) -> Element {
    match cx.store.private_get(user, &moe::settings_key()) {
        Ok(Some(xml)) => private::parse_stored(&xml).unwrap_or_else(moe::empty_settings),
        Ok(None) => moe::empty_settings(),
        Err(e) => {
            warn!(shard = cx.index, %user, error = %e, "settings read failed");
            moe::empty_settings()
        }
    }
}

/// Runs a roster-core step and keeps its effects, in order.
fn roster_fx<R>(fx: &mut Vec<ContactFx>, f: impl FnOnce(&mut Vec<RosterFx>) -> R) -> R {
    let mut inner = Vec::new();
    let r = f(&mut inner);
    fx.extend(inner.into_iter().map(ContactFx::Roster));
    r
}

impl RosterState {
    /// A MOE-MP iq for the server: settings, groups, contact add and response.
    pub(crate) fn moe_iq(&mut self, cx: &Ctx<'_>, msg: MoeIq, fx: &mut Vec<ContactFx>) {
        let MoeIq {
            from,
            iq,
            payload,
            outbox,
        } = msg;
        let Some(user) = from.local().map(str::to_string) else {
            return;
        };
        let result = match payload {
            IqPayload::SettingsGet => Ok(Some(stored_settings(cx, &user))),
            IqPayload::Groups(op) => self.groups_op(cx, &user, op, fx),
            IqPayload::AddContact(add) => add_contact(cx, &user, add, fx).map(|()| None),
            IqPayload::ContactResponse(r) => self.contact_response(cx, &user, r, fx).map(|()| None),
        };
        match result {
            Ok(payload) => outbox.send_element(&iq_result(&iq, payload)),
            Err(Refusal::Moe(e)) => outbox.send_element(&e.reply_to(&iq)),
            Err(Refusal::Stanza(err, text)) => {
                outbox.send_element(&error_reply(&iq, err, text.as_deref()))
            }
        };
    }

    /// docs/moe-mp.md §3.
    fn groups_op(
        &mut self,
        cx: &Ctx<'_>,
        user: &str,
        op: GroupOp,
        fx: &mut Vec<ContactFx>,
    ) -> Result<Option<Element>, Refusal> {
        let mut r = self.roster(cx, user);
        match op {
            GroupOp::List => {
                let all = r.all_groups();
                Ok(Some(moe::groups_result(all.iter().map(String::as_str))))
            }
            GroupOp::Create(name) => {
                if r.all_groups().contains(&name) {
                    return Err(Refusal::Moe(MoeError::GroupExists(name)));
                }
                r.groups.insert(name);
                self.save(cx, user, r, fx)?;
                Ok(None)
            }
            GroupOp::Rename { name, to } => {
                if !r.all_groups().contains(&name) {
                    return Err(Refusal::Moe(MoeError::UnknownGroup(name)));
                }
                let mut changed = Vec::new();
                for item in r.items.values_mut() {
                    if item.groups.contains(&name) {
                        item.groups.retain(|g| g != &name);
                        if !item.groups.contains(&to) {
                            item.groups.push(to.clone());
                        }
                        changed.push(roster::item_element(item));
                    }
                }
                if r.groups.remove(&name) {
                    r.groups.insert(to);
                }
                self.save(cx, user, r, fx)?;
                for item in changed {
                    self.push_item(cx, user, item); // one push per changed item (RFC 6121 §2.1.6)
                }
                Ok(None)
            }
            GroupOp::Delete(name) => {
                if !r.all_groups().contains(&name) {
                    return Err(Refusal::Moe(MoeError::UnknownGroup(name)));
                }
                let members: Vec<String> = r
                    .items
                    .values()
                    .filter(|i| i.groups.contains(&name))
                    .map(|i| i.jid.clone())
                    .collect();
                if r.groups.remove(&name) {
                    self.save(cx, user, r, fx)?;
                }
                for jid in members {
                    if let Ok(jid) = Jid::parse(&jid) {
                        let removed = roster_fx(fx, |f| self.remove_contact(cx, user, &jid, f));
                        if !removed {
                            return Err(Refusal::Stanza(StanzaError::InternalServerError, None));
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    fn save(
        &mut self,
        cx: &Ctx<'_>,
        user: &str,
        r: Roster,
        fx: &mut Vec<ContactFx>,
    ) -> Result<(), Refusal> {
        if roster_fx(fx, |f| self.save_roster(cx, user, r, None, f)) {
            Ok(())
        } else {
            Err(Refusal::Stanza(StanzaError::InternalServerError, None))
        }
    }

    /// docs/moe-mp.md §4, the contact's answer.
    fn contact_response(
        &mut self,
        cx: &Ctx<'_>,
        user: &str,
        resp: moe::ContactResponse,
        fx: &mut Vec<ContactFx>,
    ) -> Result<(), Refusal> {
        let key = resp.jid.to_bare().to_string();
        let mut r = self.roster(cx, user);
        let Some(wish) = r.contact_requests.remove(&key) else {
            return Err(Refusal::Moe(MoeError::UnknownRequest));
        };
        let Some(requester) = resp.jid.local().map(str::to_string) else {
            return Err(Refusal::Moe(MoeError::UnknownRequest));
        };
        let mut presence = Vec::new();
        if resp.accept {
            let item = r
                .items
                .entry(key.clone())
                .or_insert_with(|| crate::store::RosterItem::new(key.clone()));
            item.subscription = Subscription::Both;
            item.ask = false;
            r.pending_in.remove(&key);
            let el = roster::item_element(item);
            self.save(cx, user, r, fx)?;
            self.push_item(cx, user, el);
            presence = follow_up_presence(cx, user, SubKind::Subscribed);
        } else {
            self.save(cx, user, r, fx)?;
        }
        fx.push(ContactFx::Answered(ContactAnswered {
            requester,
            contact: cx.bare(user),
            accepted: resp.accept,
            wish,
            presence,
        }));
        Ok(())
    }

    /// A contact-add request for one of this shard's users: kept until it answers, and
    /// shown to it now if it is online.
    pub(crate) fn contact_request_in(
        &mut self,
        cx: &Ctx<'_>,
        msg: ContactRequestIn,
        fx: &mut Vec<ContactFx>,
    ) {
        let requester = msg.requester.to_string();
        let mut r = self.roster(cx, &msg.contact);
        r.contact_requests
            .insert(requester.clone(), msg.wish.clone());
        if roster_fx(fx, |f| self.save_roster(cx, &msg.contact, r, None, f)) {
            // Delivered now to available resources, else at the next initial presence.
            let el = contact_request_message(cx, &msg.contact, &requester, &msg.wish);
            deliver_to_available(cx, &msg.contact, &el);
        }
    }

    /// The contact answered one of this shard's users' requests.
    pub(crate) fn contact_answered(
        &mut self,
        cx: &Ctx<'_>,
        msg: ContactAnswered,
        fx: &mut Vec<ContactFx>,
    ) {
        let user = msg.requester;
        let contact = msg.contact.to_string();
        if !msg.accepted {
            // The requester is told now, or at its next login (stored like a message).
            let note = Element::new("message", CLIENT_NS)
                .with_attr("from", cx.domain())
                .with_attr("to", cx.bare(&user).to_string())
                .with_child(
                    Element::new("body", CLIENT_NS)
                        .with_text(format!("{contact} did not accept the contact request")),
                )
                .with_child(moe::contact_refused(&contact));
            let to = cx.bare(&user);
            fx.push(ContactFx::Roster(RosterFx::Deliver { to, stanza: note }));
            return;
        }
        let mut r = self.roster(cx, &user);
        let item = r
            .items
            .entry(contact.clone())
            .or_insert_with(|| crate::store::RosterItem::new(contact.clone()));
        item.subscription = Subscription::Both;
        item.ask = false;
        if msg.wish.name.is_some() {
            item.name = msg.wish.name.clone();
        }
        if let Some(g) = &msg.wish.group {
            if !item.groups.contains(g) {
                item.groups.push(g.clone());
            }
        }
        let el = roster::item_element(item);
        r.pending_in.remove(&contact);
        if !roster_fx(fx, |f| self.save_roster(cx, &user, r, None, f)) {
            return;
        }
        self.push_item(cx, &user, el);
        // Presence both ways, as after a mutual subscription (RFC 6121 §3.1.5).
        if let Some(c) = msg.contact.local() {
            for p in follow_up_presence(cx, &user, SubKind::Subscribed) {
                fan_out_to_user(cx, &p, c);
            }
        }
        for p in &msg.presence {
            fan_out_to_user(cx, p, &user);
        }
    }
}

/// docs/moe-mp.md §4, the requester's side.
fn add_contact(
    cx: &Ctx<'_>,
    user: &str,
    add: moe::AddContact,
    fx: &mut Vec<ContactFx>,
) -> Result<(), Refusal> {
    let Some(contact) = local_account(cx, &add.jid) else {
        return Err(Refusal::Stanza(
            StanzaError::ItemNotFound,
            Some(format!("no user {}", add.jid)),
        ));
    };
    if contact == user {
        return Err(Refusal::Stanza(
            StanzaError::NotAllowed,
            Some("cannot add yourself".into()),
        ));
    }
    fx.push(ContactFx::Request(ContactRequestIn {
        contact,
        requester: cx.bare(user),
        wish: PendingContact {
            name: add.name,
            group: add.group,
        },
    }));
    Ok(())
}

/// The local part of `jid` when it names an account of this domain.
pub(crate) fn local_account(cx: &Ctx<'_>, jid: &Jid) -> Option<String> {
    let user = jid.local()?.to_string();
    (jid.domain() == cx.domain() && cx.user_exists(&user)).then_some(user)
}
