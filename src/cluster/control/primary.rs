//! What only the primary knows (DESIGN.md §2 `Allocator`, §4–§7): the allocator (servers,
//! their reported loads and liveness, the directory, the pool), the live users of every
//! server from their `pres-sys-users` reports, the workers a drain released into the pool,
//! and the version of the cluster state document with the users changed since the last
//! round of deltas.
//!
//! It takes the members' INFO reports and write-throughs ([`Primary::on_info`]) and builds
//! the cluster state document ([`Primary::snapshot`], [`Primary::delta`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use tracing::info;

use crate::cluster::allocator::{Allocator, Health, Millis, Params};
use crate::cluster::ccmp::{CcmpRequest, Element, LoadLevel, Protocol, SysUser};
use crate::cluster::dialog;
use crate::cluster::record;
use crate::cluster::state::{ClusterState, Kind, PresType, ServerUsers, SvrLoad, UserInfo};
use crate::cluster::view::ClusterView;
use crate::config::{Config, PoolConfig};

use super::context::Records;
use super::effect::{HubCall, Out};

/// The primary's state.
#[derive(Debug)]
pub struct Primary {
    /// Placement decisions, loads, liveness, directory and pool.
    pub alloc: Allocator,
    /// Live users per server, from `pres-sys-users` (and our own monitor).
    live_by_server: BTreeMap<String, HashMap<String, SysUser>>,
    /// `[[node]]` workers released by a drain (scale-in or `ctl drain`): pool candidates
    /// from then on, like `[[pool]]` entries (without spawn or stop commands).
    released: BTreeSet<String>,
    /// The origin of the allocator's [`Millis`].
    started: Instant,
    /// Version of the cluster state document.
    version: u64,
    /// Users whose directory entry changed since the last round of deltas.
    changed: BTreeSet<String>,
}

impl Primary {
    /// The allocator of `config`, with the `[[pool]]` entries as its pool; `started` is the
    /// origin of its clock.
    pub fn new(config: &Config, started: Instant) -> Self {
        let c = &config.cluster;
        let mut alloc = Allocator::new(Params {
            max_load: c.max_load,
            min_load: c.min_load,
            report_interval_ms: c.report_interval_ms,
            dead_after_ms: c.dead_after_ms,
        });
        alloc.set_pool(config.pool.iter().map(|p| p.id.clone()).collect());
        Primary {
            alloc,
            live_by_server: BTreeMap::new(),
            released: BTreeSet::new(),
            started,
            version: 0,
            changed: BTreeSet::new(),
        }
    }

    /// `now` on the allocator's clock.
    pub fn millis(&self, now: Instant) -> Millis {
        now.saturating_duration_since(self.started).as_millis() as Millis
    }

    /// The primary starts: it serves users itself first, and loads the durable directory
    /// (DESIGN.md §3) into the allocator and the view.
    pub fn start<P>(
        &mut self,
        me: &str,
        directory: Vec<(String, String)>,
        view: &ClusterView,
        out: &mut Out<P>,
    ) {
        self.alloc.add_server(me, 0);
        self.alloc.set_preferred(Some(me));
        for (user, home) in directory {
            self.alloc.set_home(&user, &home);
            if view.set_home(&user, &home) {
                out.hub(HubCall::HomeChanged(user));
            }
        }
    }

    /// Version of the cluster state document.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The cluster state changed (servers, loads, users): the document takes a new version.
    pub fn bump(&mut self) {
        self.version += 1;
    }

    /// `user`'s directory entry changed: it goes out in the next round of deltas.
    pub fn changed(&mut self, user: &str) {
        self.changed.insert(user.to_string());
        self.version += 1;
    }

    /// A server's load report (ours, a member's INFO, or a CCMP response).
    pub fn report(&mut self, level: &LoadLevel, now: Instant) {
        let now = self.millis(now);
        self.alloc
            .report(&level.svr_id, level.version, level.level, level.users, now);
    }

    /// Takes the `pressvr-load` of `server` that a member's CCMP response carries (it
    /// reports its level with every answer that changed it).
    pub fn apply_reported_load(&mut self, server: &str, elements: &[Element], now: Instant) {
        for e in elements {
            if let Element::PressvrLoad(levels) = e {
                for l in levels.iter().filter(|l| l.svr_id == server) {
                    self.report(l, now);
                }
            }
        }
    }

    /// Our own live users, from our monitor.
    pub fn set_own_users(&mut self, me: &str, users: Vec<SysUser>) {
        self.live_by_server.insert(
            me.to_string(),
            users.into_iter().map(|u| (u.user.clone(), u)).collect(),
        );
    }

    /// Liveness transitions since the last tick (see `Allocator::tick`).
    pub fn tick(&mut self, now: Instant) -> Vec<(String, Health)> {
        let now = self.millis(now);
        self.alloc.tick(now)
    }

    /// A session with server `id` is up: it is a member, out of the pool, with its load.
    pub fn session_up(&mut self, id: &str, load: Option<&LoadLevel>, now: Instant) {
        let ms = self.millis(now);
        self.alloc.add_server(id, ms);
        if let Some(l) = load {
            self.report(l, now);
        }
        let pool: Vec<String> = self
            .alloc
            .pool()
            .iter()
            .filter(|p| *p != id)
            .cloned()
            .collect();
        self.alloc.set_pool(pool);
        self.bump();
    }

    /// The session with server `id` ended: it is no member, and a pool entry (or a released
    /// worker) is a candidate again.
    pub fn session_down(&mut self, config: &Config, id: &str) {
        self.alloc.remove_server(id);
        self.live_by_server.remove(id);
        self.bump();
        if self.candidate(config, id).is_some() && !self.alloc.pool().iter().any(|p| p == id) {
            let mut pool = self.alloc.pool().to_vec();
            pool.push(id.to_string());
            self.alloc.set_pool(pool);
        }
    }

    /// An INFO from member `peer_id`: its load and user reports, its write-throughs. The
    /// elements to answer with, or the refusal (code, why).
    pub fn on_info(
        &mut self,
        peer_id: &str,
        body: &CcmpRequest,
        view: &ClusterView,
        records: &dyn Records,
        now: Instant,
    ) -> Result<Vec<Element>, (u16, String)> {
        for e in &body.elements {
            match e {
                Element::PressvrLoad(levels) => {
                    for l in levels.iter().filter(|l| l.svr_id == peer_id) {
                        self.report(l, now);
                        if view.set_dead(peer_id, false) {
                            info!(node = %peer_id, "node reports again");
                            // Back in the published server list.
                            self.bump();
                        }
                    }
                }
                Element::PresSysUsers {
                    svr_id,
                    full,
                    present,
                    gone,
                } if svr_id == peer_id => {
                    let map = self.live_by_server.entry(svr_id.clone()).or_default();
                    if *full {
                        map.clear();
                    }
                    for g in gone {
                        map.remove(g);
                    }
                    for u in present {
                        map.insert(u.user.clone(), u.clone());
                    }
                    self.bump();
                }
                Element::UserUpdate { user, record } => {
                    let rec = record::decode(record).map_err(|e| (400, e.to_string()))?;
                    let local = user.split('@').next().unwrap_or(user);
                    // Only the user's home writes its record (DESIGN.md §3). A node the user
                    // moved away from hands its last changes to the new home instead, which
                    // merges them and writes the result through (§7); a late write from the
                    // old home would undo what the new home wrote meanwhile.
                    if let Some(home) = self.alloc.home(local).filter(|h| *h != peer_id) {
                        return Err((409, format!("{local} is homed at {home}, not {peer_id}")));
                    }
                    records
                        .import(local, &rec)
                        .map_err(|e| (409, e.to_string()))?;
                }
                other => {
                    return Err((
                        409,
                        format!("{} is not accepted by the primary", other.name()),
                    ))
                }
            }
        }
        Ok(Vec::new())
    }

    /// The pool entry `id` names: a `[[pool]]` entry, or a `[[node]]` worker that a drain
    /// released (taken again the same way, with no command to spawn or stop it).
    pub fn candidate(&self, config: &Config, id: &str) -> Option<PoolConfig> {
        if let Some(p) = config.pool.iter().find(|p| p.id == id) {
            return Some(p.clone());
        }
        if !self.released.contains(id) {
            return None;
        }
        let n = config.nodes.iter().find(|n| n.id == id)?;
        Some(PoolConfig {
            id: n.id.clone(),
            sip: n.sip,
            xmpp: n.xmpp,
            admin: n.admin,
            data_dir: n.data_dir.clone(),
            spawn: None,
            stop: None,
        })
    }

    /// A drained `[[node]]` worker becomes a pool candidate: taken again when all are full.
    pub fn release(&mut self, id: &str) {
        self.released.insert(id.to_string());
    }

    /// Every pool candidate that is not a member now: the `[[pool]]` entries, then the
    /// released workers.
    pub fn idle_candidates(&self, config: &Config) -> Vec<String> {
        let active: HashSet<&str> = self.alloc.servers().map(|s| s.id.as_str()).collect();
        config
            .pool
            .iter()
            .map(|p| &p.id)
            .chain(&self.released)
            .filter(|id| !active.contains(id.as_str()))
            .cloned()
            .collect()
    }

    /// The pool as `svr-uri`s.
    pub fn pool_uris(&self, config: &Config) -> Vec<String> {
        self.alloc
            .pool()
            .iter()
            .filter_map(|id| self.candidate(config, id))
            .map(|p| dialog::cluster_uri(p.sip))
            .collect()
    }

    /// Every member's load as `curr-load-level`s.
    pub fn load_levels(&self) -> Vec<LoadLevel> {
        self.alloc
            .servers()
            .map(|s| LoadLevel {
                svr_id: s.id.clone(),
                level: s.load,
                users: s.users,
                resources: 0,
                version: s.version,
            })
            .collect()
    }

    /// How `user`, homed on `server`, is connected (XMPP when it is not reported live).
    pub fn protocol_of(&self, server: &str, user: &str) -> Protocol {
        self.live_by_server
            .get(server)
            .and_then(|m| m.get(user))
            .map_or(Protocol::Xmpp, |u| u.protocol)
    }

    /// The users `server` reports live, sorted.
    pub fn online(&self, server: &str) -> Vec<String> {
        let mut online: Vec<String> = self
            .live_by_server
            .get(server)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        online.sort();
        online
    }

    /// The cluster state as the primary knows it (DESIGN.md §6): a full snapshot.
    pub fn snapshot(&self, config: &Config) -> ClusterState {
        let max = config.cluster.max_load;
        // A dead server is left out: members take its absence as its death (§5, §6).
        let servers: Vec<SvrLoad> = self
            .alloc
            .servers()
            .filter(|s| s.health != Health::Dead)
            .map(|s| SvrLoad {
                id: s.id.clone(),
                current: s.load,
                max,
            })
            .collect();
        let mut by_server: BTreeMap<&str, Vec<UserInfo>> = BTreeMap::new();
        for (user, home) in self.alloc.directory() {
            let live = self.live_by_server.get(home).and_then(|m| m.get(user));
            by_server.entry(home).or_default().push(UserInfo {
                user_id: user.to_string(),
                pres_type: match live.map(|l| l.protocol) {
                    Some(Protocol::Sip) => PresType::Sip,
                    _ => PresType::Xmpp,
                },
                resources: live.map_or(0, |l| l.resources),
                pres_info: if live.is_some() { "open" } else { "closed" }.into(),
            });
        }
        let total = self.alloc.directory_len() as u64;
        let users = by_server
            .into_iter()
            .map(|(server, mut users)| {
                users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
                ServerUsers {
                    server_id: server.to_string(),
                    users,
                }
            })
            .collect();
        ClusterState {
            version: self.version,
            kind: Kind::Full,
            chunk: 1,
            chunks: 1,
            active: servers.len() as u32,
            servers,
            candidates: self.pool_uris(config),
            users,
            total_users: total,
            removed: Vec::new(),
        }
    }

    /// The changes since the last round as one delta (the users changed meanwhile, and
    /// those that left the directory); the changed set starts over.
    pub fn delta(&mut self, config: &Config) -> ClusterState {
        let mut doc = self.snapshot(config);
        let changed = std::mem::take(&mut self.changed);
        doc.kind = Kind::Delta;
        for s in &mut doc.users {
            s.users.retain(|u| changed.contains(&u.user_id));
        }
        doc.users.retain(|s| !s.users.is_empty());
        doc.removed = changed
            .iter()
            .filter(|u| self.alloc.home(u).is_none())
            .cloned()
            .collect();
        doc
    }

    /// Nobody watches: the changes need not be kept.
    pub fn forget_changes(&mut self) {
        self.changed.clear();
    }

    /// A delta was split into `parts` documents, each with its own version.
    pub fn used_versions(&mut self, parts: usize) {
        self.version += (parts as u64).saturating_sub(1);
    }
}
