//! Where each online user's resources are and what presence they last broadcast.
//!
//! Written only by the presence shard that owns the user; read by every shard for fan-out
//! (RFC 6121 §4.2.2 broadcast, §4.3.2 probe answers, §8.5 message delivery). The table is
//! split into slices, each behind its own lock, and an entry is an immutable `Arc` replaced on
//! change, so a reader holds a lock only for one hash lookup and fan-out never waits on a
//! global lock.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::outbox::Outbox;

/// Where the stanzas for one resource go.
#[derive(Clone)]
pub enum Sink {
    /// A bound XMPP session: its outbox.
    Xmpp(Outbox),
    /// No XMPP session here: a tuple published over SIP and shown to XMPP contacts as a
    /// resource (RFC 8048 §4), whose messages go to the user's SIP registrations, or the
    /// presence of a user homed on another node mirrored from a back-end subscription
    /// (DESIGN.md §8). Stanzas written to it are dropped.
    Sip,
}

impl Sink {
    /// Queues bytes; false when nothing takes them (a closing session, a full queue, SIP).
    #[inline]
    pub fn send(&self, bytes: Bytes) -> bool {
        match self {
            Sink::Xmpp(outbox) => outbox.send(bytes),
            Sink::Sip => false,
        }
    }

    /// Serialises and queues a stanza; false as for [`Self::send`].
    pub fn send_element(&self, el: &crate::xml::Element) -> bool {
        match self {
            Sink::Xmpp(outbox) => outbox.send_element(el),
            Sink::Sip => false,
        }
    }

    /// The session's outbox, for an XMPP resource.
    pub fn outbox(&self) -> Option<&Outbox> {
        match self {
            Sink::Xmpp(outbox) => Some(outbox),
            Sink::Sip => None,
        }
    }
}

/// One bound resource of a user.
#[derive(Clone)]
pub struct ResourceRoute {
    /// The resourcepart.
    pub resource: String,
    /// The session that bound it (distinguishes a replaced session from its successor).
    pub session_id: u64,
    /// Where stanzas for it go.
    pub sink: Sink,
    /// Its last broadcast presence (serialised, with `from` = full JID, no `to`), or `None`
    /// while it has not sent available presence (RFC 6121 §4.2: not an "available resource").
    pub presence: Option<Bytes>,
    /// Priority of that presence (RFC 6121 §4.7.2.3).
    pub priority: i8,
    /// Whether it asked for the roster (RFC 6121 §2.1.6 "interested resource").
    pub interested: bool,
}

impl ResourceRoute {
    /// Whether this is no XMPP session of this node but a SIP tuple or mirrored presence
    /// ([`Sink::Sip`]).
    #[inline]
    pub fn is_sip(&self) -> bool {
        matches!(self.sink, Sink::Sip)
    }
}

/// All resources of one user.
pub type UserRoutes = Arc<Vec<ResourceRoute>>;

/// The node-wide routing table.
pub struct Routes {
    slices: Box<[RwLock<HashMap<String, UserRoutes>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Routes {
    /// A table split into `slices` locks (a power of two is not required).
    pub fn new(slices: usize) -> Routes {
        Routes {
            slices: (0..slices.max(1))
                .map(|_| RwLock::new(HashMap::new()))
                .collect(),
            hasher: Default::default(),
        }
    }

    fn slice(&self, user: &str) -> &RwLock<HashMap<String, UserRoutes>> {
        &self.slices[(self.hasher.hash_one(user) % self.slices.len() as u64) as usize]
    }

    /// The resources of `user` (empty when offline).
    pub fn get(&self, user: &str) -> UserRoutes {
        let slice = self.slice(user).read().unwrap_or_else(|e| e.into_inner());
        slice.get(user).cloned().unwrap_or_default()
    }

    /// Replaces the resources of `user`; an empty list removes the user. Only the owning
    /// shard calls this.
    pub fn set(&self, user: &str, routes: Vec<ResourceRoute>) {
        let mut slice = self.slice(user).write().unwrap_or_else(|e| e.into_inner());
        if routes.is_empty() {
            slice.remove(user);
        } else {
            slice.insert(user.to_string(), Arc::new(routes));
        }
    }

    /// Number of online users.
    pub fn online_users(&self) -> usize {
        self.slices
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// The resources a message to the bare JID goes to (RFC 6121 §8.5.2.1.1): the available ones
/// with the highest non-negative priority.
pub fn message_targets(routes: &[ResourceRoute]) -> Vec<&ResourceRoute> {
    let best = routes
        .iter()
        .filter(|r| r.presence.is_some() && r.priority >= 0)
        .map(|r| r.priority)
        .max();
    match best {
        Some(p) => routes
            .iter()
            .filter(|r| r.presence.is_some() && r.priority == p)
            .collect(),
        None => Vec::new(),
    }
}

/// The available resources (RFC 6121 §4.1 "available resource").
pub fn available(routes: &[ResourceRoute]) -> impl Iterator<Item = &ResourceRoute> {
    routes.iter().filter(|r| r.presence.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(resource: &str, priority: i8, available: bool) -> ResourceRoute {
        ResourceRoute {
            resource: resource.into(),
            session_id: 1,
            sink: Sink::Xmpp(Outbox::new(4096)),
            presence: available.then(|| Bytes::from_static(b"<presence/>")),
            priority,
            interested: false,
        }
    }

    #[test]
    fn highest_non_negative_priority_wins_rfc6121_8_5_2_1_1() {
        let rs = vec![
            route("a", 1, true),
            route("b", 5, true),
            route("c", 5, true),
            route("d", 9, false),
        ];
        let t: Vec<_> = message_targets(&rs)
            .iter()
            .map(|r| r.resource.as_str())
            .collect();
        assert_eq!(t, ["b", "c"]);
        let negative = vec![route("a", -1, true)];
        assert!(message_targets(&negative).is_empty());
    }

    #[test]
    fn set_and_remove() {
        let table = Routes::new(4);
        table.set("alice", vec![route("a", 0, true)]);
        assert_eq!(table.get("alice").len(), 1);
        assert_eq!(table.online_users(), 1);
        table.set("alice", vec![]);
        assert!(table.get("alice").is_empty());
        assert_eq!(table.online_users(), 0);
    }
}
