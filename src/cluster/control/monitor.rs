//! The load monitor of a node (DESIGN.md §2 `LoadMonitor`, §4): this node's load level
//! `w_users * users + w_resources * resources` from the presence core's measurements and
//! from the reservations it accepts between two of them, and the `pressvr-load` /
//! `pres-sys-users` report a member sends the primary (only the changes of the user set
//! after the first, full, report).

use std::collections::HashMap;

use crate::cluster::ccmp::{Element, LoadLevel, Protocol, SysUser};
use crate::config::ClusterConfig;

/// One live user as the presence core counts it (DESIGN.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// Whether the user is here over SIP only (no XMPP session).
    pub sip_only: bool,
    /// Presence resources: watched roster contacts, SIP subscriptions, publications.
    pub resources: u32,
}

/// This node's load and the live users it was computed from.
#[derive(Debug, Default)]
pub struct LoadMonitor {
    version: u64,
    level: u64,
    users: u64,
    resources: u64,
    live: HashMap<String, Live>,
    /// The user set as the primary last acknowledged it; `None`: send it whole.
    reported: Option<HashMap<String, Live>>,
}

impl LoadMonitor {
    /// Nothing measured yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A measurement: the users live here now, plus `reserved` users expected but not yet
    /// arrived (two-phase placement).
    pub fn measured(&mut self, c: &ClusterConfig, live: HashMap<String, Live>, reserved: u64) {
        let resources: u64 = live.values().map(|l| u64::from(l.resources)).sum();
        self.users = live.len() as u64 + reserved;
        self.resources = resources;
        self.level = c.weight_users * self.users + c.weight_resources * resources;
        self.version += 1;
        self.live = live;
    }

    /// A reservation here: the report version moves on, and a user new here (`cost` is
    /// `Some`) counts at once, as the next measurement would count it.
    pub fn reserve(&mut self, cost: Option<u64>) {
        self.version += 1;
        if let Some(cost) = cost {
            self.users += 1;
            self.level += cost;
        }
    }

    /// A user left this node (moved away): its load stops counting now rather than at the
    /// next measurement, so that placements right after a series of moves see the room.
    /// False when it was not live here.
    pub fn forget(&mut self, c: &ClusterConfig, user: &str) -> bool {
        let Some(l) = self.live.remove(user) else {
            return false;
        };
        self.users = self.users.saturating_sub(1);
        self.resources = self.resources.saturating_sub(u64::from(l.resources));
        self.level = self
            .level
            .saturating_sub(c.weight_users + c.weight_resources * u64::from(l.resources));
        self.version += 1;
        true
    }

    /// This node's `curr-load-level`.
    pub fn level(&self, me: &str) -> LoadLevel {
        LoadLevel {
            svr_id: me.to_string(),
            level: self.level,
            users: self.users,
            resources: self.resources,
            version: self.version,
        }
    }

    /// The load level.
    pub fn load(&self) -> u64 {
        self.level
    }

    /// Users counted (live and reserved).
    pub fn users(&self) -> u64 {
        self.users
    }

    /// Presence resources counted.
    pub fn resources(&self) -> u64 {
        self.resources
    }

    /// The live users, sorted.
    pub fn live_users(&self) -> Vec<&String> {
        let mut users: Vec<&String> = self.live.keys().collect();
        users.sort();
        users
    }

    /// The live users as `pres-sys-users` lists them, sorted.
    pub fn sys_users(&self) -> Vec<SysUser> {
        let mut v: Vec<SysUser> = self
            .live
            .iter()
            .map(|(u, l)| SysUser {
                user: u.clone(),
                protocol: if l.sip_only {
                    Protocol::Sip
                } else {
                    Protocol::Xmpp
                },
                resources: l.resources,
            })
            .collect();
        v.sort_by(|a, b| a.user.cmp(&b.user));
        v
    }

    /// A member's report to the primary: `pressvr-load`, and `pres-sys-users` when the user
    /// set changed since the last acknowledged report (all of it the first time); with the
    /// user set it reports, to pass to [`Self::acknowledged`] once the primary has it.
    pub fn report(&self, me: &str) -> (Vec<Element>, Reported) {
        let mut elements = vec![Element::PressvrLoad(vec![self.level(me)])];
        let (full, present, gone) = match &self.reported {
            None => (true, self.sys_users(), Vec::new()),
            Some(prev) => {
                let present: Vec<SysUser> = self
                    .sys_users()
                    .into_iter()
                    .filter(|u| prev.get(&u.user).map(|p| p.resources) != Some(u.resources))
                    .collect();
                let mut gone: Vec<String> = prev
                    .keys()
                    .filter(|u| !self.live.contains_key(*u))
                    .cloned()
                    .collect();
                gone.sort();
                (false, present, gone)
            }
        };
        if full || !present.is_empty() || !gone.is_empty() {
            elements.push(Element::PresSysUsers {
                svr_id: me.to_string(),
                full,
                present,
                gone,
            });
        }
        (elements, Reported(self.live.clone()))
    }

    /// The primary acknowledged a report: later ones carry the changes since it.
    pub fn acknowledged(&mut self, reported: Reported) {
        self.reported = Some(reported.0);
    }

    /// A new session with the primary: the next report carries the whole user set.
    pub fn report_all(&mut self) {
        self.reported = None;
    }
}

/// The user set a report carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported(HashMap<String, Live>);

#[cfg(test)]
mod tests {
    use super::*;

    fn live(users: &[(&str, bool, u32)]) -> HashMap<String, Live> {
        users
            .iter()
            .map(|(u, sip_only, resources)| {
                (
                    u.to_string(),
                    Live {
                        sip_only: *sip_only,
                        resources: *resources,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn the_load_follows_measurements_reservations_and_departures() {
        let c = ClusterConfig::default();
        let mut m = LoadMonitor::new();
        m.measured(&c, live(&[("a", false, 2), ("b", true, 1)]), 1);
        // 3 users (one reserved) + 3 resources.
        assert_eq!((m.users(), m.resources(), m.load()), (3, 3, 6));
        let v = m.level("w").version;
        m.reserve(Some(4));
        assert_eq!((m.users(), m.load()), (4, 10));
        m.reserve(None);
        assert_eq!(m.users(), 4, "a returning user is not counted twice");
        assert_eq!(m.level("w").version, v + 2);
        assert!(m.forget(&c, "a"));
        assert_eq!((m.users(), m.resources(), m.load()), (3, 1, 7));
        assert!(!m.forget(&c, "a"));
    }

    #[test]
    fn reports_carry_the_whole_user_set_then_its_changes() {
        let c = ClusterConfig::default();
        let mut m = LoadMonitor::new();
        m.measured(&c, live(&[("a", false, 2), ("b", true, 1)]), 0);
        let (elements, reported) = m.report("w");
        assert!(
            matches!(&elements[1], Element::PresSysUsers { full: true, present, .. } if present.len() == 2)
        );
        // Not acknowledged: the next one is full again.
        let (again, _) = m.report("w");
        assert!(matches!(
            &again[1],
            Element::PresSysUsers { full: true, .. }
        ));
        m.acknowledged(reported);
        let (same, _) = m.report("w");
        assert_eq!(same.len(), 1, "nothing changed: the load alone");
        m.measured(&c, live(&[("a", false, 3), ("c", false, 0)]), 0);
        let (changes, _) = m.report("w");
        match &changes[1] {
            Element::PresSysUsers {
                full,
                present,
                gone,
                ..
            } => {
                assert!(!full);
                let users: Vec<&str> = present.iter().map(|u| u.user.as_str()).collect();
                assert_eq!(users, ["a", "c"]);
                assert_eq!(gone, &["b".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        m.report_all();
        let (full, _) = m.report("w");
        assert!(matches!(&full[1], Element::PresSysUsers { full: true, .. }));
    }
}
