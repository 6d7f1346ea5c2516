//! The roster as the server keeps it (RFC 6121 §2.1): items with their subscription state
//! (Appendix A), pending inbound requests (§3.1.3), the empty groups and contact-add requests
//! of MOE-MP (docs/moe-mp.md §3, §4), and the three-way merge of a moved user's roster
//! (DESIGN.md §7). Pure data: the store keeps it, the presence core changes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::xmpp::subscription::{SubState, Subscription};

/// One contact in a roster (RFC 6121 §2.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterItem {
    /// The contact's bare JID.
    pub jid: String,
    /// The user-assigned display name.
    #[serde(default)]
    pub name: Option<String>,
    /// The subscription state.
    #[serde(default)]
    pub subscription: Subscription,
    /// An outbound subscription request is pending (`ask='subscribe'`).
    #[serde(default)]
    pub ask: bool,
    /// The groups the user filed the contact under.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl RosterItem {
    /// An item with no name, no groups and subscription "none".
    pub fn new(jid: impl Into<String>) -> Self {
        RosterItem {
            jid: jid.into(),
            name: None,
            subscription: Subscription::None,
            ask: false,
            groups: Vec::new(),
        }
    }
}

/// A stored inbound subscription request the user has not answered yet (RFC 6121 §3.1.3);
/// redelivered when the user next becomes available.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PendingIn {
    /// The request's `<status/>` text, if any.
    #[serde(default)]
    pub status: Option<String>,
}

/// A user's roster plus the inbound requests that have no roster item yet.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Roster {
    /// Roster items by bare JID.
    #[serde(default)]
    pub items: BTreeMap<String, RosterItem>,
    /// Pending inbound subscription requests by bare JID (with or without an item).
    #[serde(default)]
    pub pending_in: BTreeMap<String, PendingIn>,
    /// Groups created without members (MOE-MP groups, docs/moe-mp.md §3); groups that items
    /// name need not be listed here.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub groups: std::collections::BTreeSet<String>,
    /// MOE-MP contact-add requests waiting for this user's confirmation, by requester bare
    /// JID (docs/moe-mp.md §4).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub contact_requests: BTreeMap<String, PendingContact>,
}

/// A contact-add request the user has not confirmed yet: what the requester asked for its
/// own roster item.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PendingContact {
    /// The name the requester gives the user.
    #[serde(default)]
    pub name: Option<String>,
    /// The group the requester files the user under.
    #[serde(default)]
    pub group: Option<String>,
}

impl Roster {
    /// Every group: those items name and the empty ones kept on their own, sorted.
    pub fn all_groups(&self) -> std::collections::BTreeSet<String> {
        let mut all = self.groups.clone();
        for item in self.items.values() {
            all.extend(item.groups.iter().cloned());
        }
        all
    }
}

impl Roster {
    /// The subscription state (RFC 6121 A.1) of `jid`; "None" when it is unknown.
    pub fn state(&self, jid: &str) -> SubState {
        let pending_in = self.pending_in.contains_key(jid);
        match self.items.get(jid) {
            Some(item) => SubState::of(item.subscription, item.ask, pending_in),
            None => SubState::of(Subscription::None, false, pending_in),
        }
        .normalized()
    }

    /// Records the state `s` for `jid`. Creates the roster item when `s` has a
    /// subscription or a pending outbound request; a pending inbound request alone is kept
    /// in `pending_in` only (RFC 6121 §3.1.3: no item until the user approves). An
    /// existing item is updated, never removed; an existing `PendingIn` keeps its status.
    pub fn apply_state(&mut self, jid: &str, s: SubState) {
        let s = s.normalized();
        if s.sub != Subscription::None || s.pending_out {
            let item = self
                .items
                .entry(jid.to_string())
                .or_insert_with(|| RosterItem::new(jid));
            item.subscription = s.sub;
            item.ask = s.pending_out;
        } else if let Some(item) = self.items.get_mut(jid) {
            item.subscription = Subscription::None;
            item.ask = false;
        }
        if s.pending_in {
            self.pending_in.entry(jid.to_string()).or_default();
        } else {
            self.pending_in.remove(jid);
        }
    }
}

/// Three-way merge of one map (see [`Roster::merge3`]): every key `theirs` changed since
/// `base` and `ours` did not takes `theirs`' value (or goes, if `theirs` removed it); every
/// other key keeps `ours`.
pub fn merge3_map<K: Ord + Clone, V: Clone + PartialEq>(
    base: &BTreeMap<K, V>,
    theirs: &BTreeMap<K, V>,
    ours: &BTreeMap<K, V>,
) -> BTreeMap<K, V> {
    let mut out = ours.clone();
    for k in base.keys().chain(theirs.keys()) {
        let (b, t) = (base.get(k), theirs.get(k));
        if t != b && ours.get(k) == b {
            match t {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
    }
    out
}

impl Roster {
    /// A three-way merge for a user who moved (DESIGN.md §7): `base` is the copy the new
    /// home took at the reservation, `theirs` what the old home ended with, `ours` the new
    /// home's copy now. Per contact (item, pending request, MOE-MP request) and per empty
    /// group, a change made at the old home is taken unless the new home changed the same
    /// entry meanwhile: the newer of the two is the new home's.
    pub fn merge3(base: &Roster, theirs: &Roster, ours: &Roster) -> Roster {
        let set = |s: &std::collections::BTreeSet<String>| -> BTreeMap<String, ()> {
            s.iter().map(|g| (g.clone(), ())).collect()
        };
        Roster {
            items: merge3_map(&base.items, &theirs.items, &ours.items),
            pending_in: merge3_map(&base.pending_in, &theirs.pending_in, &ours.pending_in),
            groups: merge3_map(&set(&base.groups), &set(&theirs.groups), &set(&ours.groups))
                .into_keys()
                .collect(),
            contact_requests: merge3_map(
                &base.contact_requests,
                &theirs.contact_requests,
                &ours.contact_requests,
            ),
        }
    }
}
