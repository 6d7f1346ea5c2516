//! What the edges of a node (the XMPP session after SASL, the SIP transport before a request
//! reaches a shard) need to know synchronously: is this user homed here, elsewhere, or must
//! the primary's allocator decide (DESIGN.md §3, §4). The control actor writes it; every
//! connection reads it with one short read lock.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Where a node serves its users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddrs {
    /// Node id.
    pub id: String,
    /// XMPP c2s address (advertised in `see-other-host` and the cxfr iq).
    pub xmpp: SocketAddr,
    /// SIP address (advertised in `302` Contacts, target of CCMP).
    pub sip: SocketAddr,
}

/// The answer for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locate {
    /// Serve the user here.
    Local,
    /// Redirect the client there.
    Elsewhere(NodeAddrs),
    /// Only the allocator can tell (primary, user not homed here).
    Ask,
}

/// Where a user's stanzas are handled (see [`ClusterView::route`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// On this node.
    Here,
    /// On that node.
    There(NodeAddrs),
}

/// How long a reservation counts towards this node's load while its user has not arrived.
pub const RESERVATION_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Inner {
    joined: bool,
    primary: Option<NodeAddrs>,
    nodes: HashMap<String, NodeAddrs>,
    dead: HashSet<String>,
    /// user -> home: the whole directory on the primary, the replica on a member.
    homes: HashMap<String, String>,
    /// Users reserved here by `redirection-usr-addr` who have not arrived yet.
    reserved: HashMap<String, Instant>,
    /// Homes this node learnt first hand (a reservation here, a move away), for
    /// [`RESERVATION_TTL`]: a full snapshot of the directory built before them, and applied
    /// after, does not undo them.
    pinned: HashMap<String, (String, Instant)>,
}

/// The shared view.
pub struct ClusterView {
    self_id: String,
    primary_role: bool,
    enabled: bool,
    inner: RwLock<Inner>,
}

impl ClusterView {
    /// A view for node `self_id`; `enabled` false makes every user local (single node).
    pub fn new(self_id: &str, primary_role: bool, enabled: bool) -> Self {
        ClusterView {
            self_id: self_id.to_string(),
            primary_role,
            enabled,
            inner: RwLock::new(Inner {
                joined: primary_role,
                ..Default::default()
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// This node's id.
    pub fn self_id(&self) -> &str {
        &self.self_id
    }

    /// Whether this node runs the allocator.
    pub fn is_primary(&self) -> bool {
        self.primary_role
    }

    /// Whether the node is part of a cluster at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Where `user` is served.
    pub fn locate(&self, user: &str) -> Locate {
        if !self.enabled {
            return Locate::Local;
        }
        let inner = self.read();
        if inner.reserved.contains_key(user) {
            return Locate::Local;
        }
        match inner.homes.get(user) {
            Some(h) if *h == self.self_id && inner.joined => return Locate::Local,
            _ if self.primary_role => return Locate::Ask,
            Some(h) => {
                if let Some(a) = inner.nodes.get(h).filter(|_| !inner.dead.contains(h)) {
                    return Locate::Elsewhere(a.clone());
                }
            }
            None => {}
        }
        match &inner.primary {
            Some(p) => Locate::Elsewhere(p.clone()),
            None => Locate::Local,
        }
    }

    /// Where stanzas and back-end subscriptions for `user` go (data plane, DESIGN.md §3,
    /// §8): here when the user is homed or reserved here; its home when that node lives;
    /// otherwise the primary, which keeps the durable record of every user (so the primary
    /// itself answers for users without a living home).
    pub fn route(&self, user: &str) -> Route {
        if !self.enabled {
            return Route::Here;
        }
        let inner = self.read();
        if inner.reserved.contains_key(user) {
            return Route::Here;
        }
        match inner.homes.get(user) {
            Some(h) if *h == self.self_id => return Route::Here,
            Some(h) if !inner.dead.contains(h) => {
                if let Some(a) = inner.nodes.get(h) {
                    return Route::There(a.clone());
                }
            }
            _ => {}
        }
        match &inner.primary {
            Some(p) if !self.primary_role && p.id != self.self_id => Route::There(p.clone()),
            _ => Route::Here,
        }
    }

    /// The primary accepted this member (or this node is the primary).
    pub fn set_joined(&self, joined: bool) {
        self.write().joined = joined;
    }

    /// Whether this node is an active member.
    pub fn joined(&self) -> bool {
        self.read().joined
    }

    /// The primary's addresses (members redirect unknown users there).
    pub fn set_primary(&self, addrs: NodeAddrs) {
        let mut inner = self.write();
        inner.nodes.insert(addrs.id.clone(), addrs.clone());
        inner.primary = Some(addrs);
    }

    /// The primary's addresses, when known.
    pub fn primary(&self) -> Option<NodeAddrs> {
        self.read().primary.clone()
    }

    /// Learns (or updates) a node's addresses.
    pub fn set_node(&self, addrs: NodeAddrs) {
        let mut inner = self.write();
        inner.dead.remove(&addrs.id);
        inner.nodes.insert(addrs.id.clone(), addrs);
    }

    /// A node's addresses.
    pub fn node(&self, id: &str) -> Option<NodeAddrs> {
        self.read().nodes.get(id).cloned()
    }

    /// Marks a node dead (its users are placed anew) or alive again; true when that is a
    /// change, so the caller tells the presence core once per transition.
    pub fn set_dead(&self, id: &str, dead: bool) -> bool {
        let mut inner = self.write();
        if dead {
            inner.dead.insert(id.to_string())
        } else {
            inner.dead.remove(id)
        }
    }

    /// Whether node `id` is marked dead.
    pub fn is_dead(&self, id: &str) -> bool {
        self.read().dead.contains(id)
    }

    /// `user` moved from here to `home` (the primary says so, DESIGN.md §7): a reservation
    /// here ends too, since a user moved away right after its placement is served there.
    /// True when the home changed.
    pub fn moved_away(&self, user: &str, home: &str) -> bool {
        {
            let mut inner = self.write();
            inner.reserved.remove(user);
            inner
                .pinned
                .insert(user.to_string(), (home.to_string(), Instant::now()));
        }
        self.set_home(user, home)
    }

    /// Ends a reservation of `user` here without pinning anything (the primary, whose own
    /// directory is never replaced by a snapshot, placed the user elsewhere).
    pub fn end_reservation(&self, user: &str) {
        self.write().reserved.remove(user);
    }

    /// Sets `user`'s home; true when it changed (the presence core follows the user). A
    /// reservation here still wins in [`Self::route`]: a directory copy older than the
    /// reservation may name the user's former home.
    pub fn set_home(&self, user: &str, home: &str) -> bool {
        let mut inner = self.write();
        if inner.homes.get(user).map(String::as_str) == Some(home) {
            return false;
        }
        inner.homes.insert(user.to_string(), home.to_string());
        true
    }

    /// Forgets `user`'s home; true when it had one.
    pub fn remove_home(&self, user: &str) -> bool {
        self.write().homes.remove(user).is_some()
    }

    /// Replaces the whole directory copy (a member's replica after a full snapshot) and
    /// returns the users whose home was added, changed or removed, sorted. Users reserved
    /// here, and homes this node learnt first hand in the last [`RESERVATION_TTL`], stay as
    /// they are: the snapshot may predate them (a member that joins gets a snapshot in
    /// chunks, and the users moved to it meanwhile are in it at their former home).
    pub fn replace_homes(&self, mut homes: HashMap<String, String>) -> Vec<String> {
        let mut inner = self.write();
        let now = Instant::now();
        inner
            .pinned
            .retain(|_, (_, at)| now.duration_since(*at) < RESERVATION_TTL);
        for (user, (home, _)) in &inner.pinned {
            homes.insert(user.clone(), home.clone());
        }
        for user in inner.reserved.keys() {
            homes.insert(user.clone(), self.self_id.clone());
        }
        let changed = diff_homes(&inner.homes, &homes);
        inner.homes = homes;
        changed
    }

    /// `user`'s home, if known.
    pub fn home(&self, user: &str) -> Option<String> {
        self.read().homes.get(user).cloned()
    }

    /// Users whose home is this node.
    pub fn local_homes(&self) -> usize {
        let inner = self.read();
        inner.homes.values().filter(|h| **h == self.self_id).count()
    }

    /// Reserves `user` here (two-phase placement): it counts towards the load until it
    /// arrives or [`RESERVATION_TTL`] passes. True when this changed the user's home.
    pub fn reserve(&self, user: &str, now: Instant) -> bool {
        let mut inner = self.write();
        let previous = inner.homes.insert(user.to_string(), self.self_id.clone());
        inner.reserved.insert(user.to_string(), now);
        inner
            .pinned
            .insert(user.to_string(), (self.self_id.clone(), now));
        previous.as_deref() != Some(self.self_id.as_str())
    }

    /// Settles reservations: users now `live` here and expired reservations are dropped;
    /// returns how many still wait for their user.
    pub fn settle_reservations(&self, now: Instant, live: impl Fn(&str) -> bool) -> usize {
        let mut inner = self.write();
        inner
            .reserved
            .retain(|u, at| now.duration_since(*at) < RESERVATION_TTL && !live(u));
        inner
            .pinned
            .retain(|_, (_, at)| now.duration_since(*at) < RESERVATION_TTL);
        inner.reserved.len()
    }
}

/// The users whose home differs between two directory copies (added, changed or
/// removed), sorted.
pub fn diff_homes(old: &HashMap<String, String>, new: &HashMap<String, String>) -> Vec<String> {
    let mut changed: Vec<String> = new
        .iter()
        .filter(|(user, home)| old.get(*user) != Some(*home))
        .map(|(user, _)| user.clone())
        .chain(old.keys().filter(|user| !new.contains_key(*user)).cloned())
        .collect();
    changed.sort();
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(id: &str, port: u16) -> NodeAddrs {
        NodeAddrs {
            id: id.into(),
            xmpp: SocketAddr::from(([127, 0, 0, 1], port)),
            sip: SocketAddr::from(([127, 0, 0, 1], port + 1)),
        }
    }

    #[test]
    fn a_single_node_serves_everyone() {
        let v = ClusterView::new("n", true, false);
        assert_eq!(v.locate("alice"), Locate::Local);
    }

    #[test]
    fn the_primary_asks_its_allocator_unless_the_user_is_homed_on_it() {
        let v = ClusterView::new("p", true, true);
        assert_eq!(v.locate("alice"), Locate::Ask);
        v.set_home("alice", "p");
        assert_eq!(v.locate("alice"), Locate::Local);
        v.set_home("bob", "w");
        assert_eq!(v.locate("bob"), Locate::Ask);
    }

    #[test]
    fn a_member_sends_strangers_to_their_home_or_the_primary() {
        let v = ClusterView::new("w", false, true);
        v.set_primary(addrs("p", 5000));
        v.set_node(addrs("x", 6000));
        v.set_joined(true);
        assert_eq!(v.locate("alice"), Locate::Elsewhere(addrs("p", 5000)));
        v.set_home("alice", "x");
        assert_eq!(v.locate("alice"), Locate::Elsewhere(addrs("x", 6000)));
        v.set_dead("x", true);
        assert_eq!(v.locate("alice"), Locate::Elsewhere(addrs("p", 5000)));
        let now = Instant::now();
        v.reserve("carol", now);
        assert_eq!(v.settle_reservations(now, |_| false), 1);
        assert_eq!(v.locate("carol"), Locate::Local);
        // Once live, the reservation is settled and the user stays homed here.
        assert_eq!(v.settle_reservations(now, |u| u == "carol"), 0);
        assert_eq!(v.locate("carol"), Locate::Local);
        v.reserve("dave", now);
        assert_eq!(v.settle_reservations(now + RESERVATION_TTL, |_| false), 0);
        // A stale directory entry does not take a reserved user away; a move does.
        v.reserve("erin", now);
        v.set_home("erin", "x");
        v.set_dead("x", false);
        assert_eq!(v.route("erin"), Route::Here);
        assert!(!v.moved_away("erin", "x"), "the home was x already");
        assert_eq!(v.route("erin"), Route::There(addrs("x", 6000)));
    }

    #[test]
    fn a_snapshot_older_than_a_move_does_not_undo_it() {
        let v = ClusterView::new("w", false, true);
        v.set_primary(addrs("p", 5000));
        v.set_node(addrs("x", 6000));
        v.set_joined(true);
        let now = Instant::now();
        // frank moves here, arrives (settled), and goes on being served here when the
        // snapshot built before his move names his former home.
        v.reserve("frank", now);
        assert_eq!(v.settle_reservations(now, |u| u == "frank"), 0);
        // gina moved away from here to x; the old snapshot still names this node.
        v.set_home("gina", "w");
        v.moved_away("gina", "x");
        let changed = v.replace_homes(homes(&[("frank", "x"), ("gina", "w"), ("hal", "x")]));
        assert_eq!(changed, ["hal"]);
        assert_eq!(v.route("frank"), Route::Here);
        assert_eq!(v.route("gina"), Route::There(addrs("x", 6000)));
        // Once the pins are older than RESERVATION_TTL, the directory has the last word.
        v.settle_reservations(now + RESERVATION_TTL, |_| false);
        v.replace_homes(homes(&[("frank", "x"), ("gina", "w")]));
        assert_eq!(v.route("frank"), Route::There(addrs("x", 6000)));
    }

    fn homes(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(u, h)| (u.to_string(), h.to_string()))
            .collect()
    }

    #[test]
    fn a_snapshot_diff_names_added_moved_and_removed_users_only() {
        let old = homes(&[("alice", "a"), ("bob", "b"), ("carol", "c")]);
        let new = homes(&[("alice", "a"), ("bob", "x"), ("dave", "d")]);
        assert_eq!(diff_homes(&old, &new), ["bob", "carol", "dave"]);
        assert!(diff_homes(&old, &old).is_empty());
        assert_eq!(diff_homes(&HashMap::new(), &old), ["alice", "bob", "carol"]);
        assert_eq!(diff_homes(&old, &HashMap::new()), ["alice", "bob", "carol"]);
    }

    #[test]
    fn home_and_liveness_setters_report_real_changes_only() {
        let v = ClusterView::new("w", false, true);
        assert!(v.set_home("alice", "x"));
        assert!(!v.set_home("alice", "x"));
        assert!(v.set_home("alice", "y"));
        assert!(v.remove_home("alice"));
        assert!(!v.remove_home("alice"));
        let now = Instant::now();
        assert!(v.reserve("bob", now));
        assert!(!v.reserve("bob", now), "a refreshed reservation is no move");
        assert!(v.set_dead("x", true));
        assert!(!v.set_dead("x", true));
        assert!(v.is_dead("x"));
        assert!(v.set_dead("x", false));
        assert!(!v.set_dead("x", false));
    }

    #[test]
    fn a_full_snapshot_replaces_the_directory_but_keeps_pending_reservations() {
        let v = ClusterView::new("w", false, true);
        v.set_home("alice", "x");
        v.set_home("bob", "y");
        v.reserve("carol", Instant::now());
        let changed = v.replace_homes(homes(&[("alice", "x"), ("bob", "z"), ("dave", "w")]));
        assert_eq!(changed, ["bob", "dave"]);
        assert_eq!(v.home("carol").as_deref(), Some("w"));
        assert_eq!(v.home("bob").as_deref(), Some("z"));
        assert!(v.replace_homes(homes(&[("bob", "z"), ("dave", "w")])) == ["alice"]);
    }

    #[test]
    fn stanzas_go_to_the_living_home_else_to_the_primary() {
        let v = ClusterView::new("w", false, true);
        assert_eq!(
            v.route("alice"),
            Route::Here,
            "not joined yet: nobody else to ask"
        );
        v.set_primary(addrs("p", 5000));
        v.set_node(addrs("x", 6000));
        v.set_joined(true);
        assert_eq!(v.route("alice"), Route::There(addrs("p", 5000)));
        v.set_home("alice", "x");
        assert_eq!(v.route("alice"), Route::There(addrs("x", 6000)));
        v.set_dead("x", true);
        assert_eq!(v.route("alice"), Route::There(addrs("p", 5000)));
        v.set_home("alice", "w");
        assert_eq!(v.route("alice"), Route::Here);
        // The primary answers for users whose home is dead or unknown.
        let p = ClusterView::new("p", true, true);
        p.set_primary(addrs("p", 5000));
        p.set_node(addrs("x", 6000));
        p.set_home("bob", "x");
        assert_eq!(p.route("bob"), Route::There(addrs("x", 6000)));
        p.set_dead("x", true);
        assert_eq!(p.route("bob"), Route::Here);
        assert_eq!(p.route("carol"), Route::Here);
        assert_eq!(ClusterView::new("n", true, false).route("x"), Route::Here);
    }
}
