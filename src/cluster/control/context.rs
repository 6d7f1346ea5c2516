//! What every control-plane part reads: the node's settings (`cluster.toml` and its own
//! addresses) and, behind a narrow trait, the user records of the store (DESIGN.md §3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::ccmp::{self, SvrInfo};
use crate::cluster::dialog::{self, CLUSTER_USER};
use crate::cluster::record::UserRecord;
use crate::cluster::view::NodeAddrs;
use crate::config::{ClusterConfig, Config};

use super::error::ControlError;

/// How long a member's cluster state subscription lasts before it is refreshed (seconds;
/// the most a watcher may ask for).
pub const STATE_EXPIRES: u32 = 3600;

/// How a node's control plane is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The whole configuration.
    pub config: Arc<Config>,
    /// This node's advertised addresses (bound ports resolved).
    pub me: NodeAddrs,
    /// Admin API address, if served.
    pub admin: Option<SocketAddr>,
    /// `--join`: the primary to INVITE at start (members listed as workers join anyway).
    pub join: Option<SocketAddr>,
}

impl Settings {
    /// `[cluster]`.
    pub fn cluster(&self) -> &ClusterConfig {
        &self.config.cluster
    }

    /// `cluster.secret`: the HMAC key of every control-plane message.
    pub fn secret(&self) -> &str {
        &self.config.cluster.secret
    }

    /// `cluster.ccmp_timeout_ms`: the deadline of a control-plane request.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.cluster.ccmp_timeout_ms)
    }

    /// Our `confUserID`.
    pub fn conf_user(&self) -> String {
        ccmp::conf_user_id(&self.me.id, &self.config.cluster.domain)
    }

    /// Our SIP address (control requests go out from it, Contacts name it).
    pub fn local(&self) -> SocketAddr {
        self.me.sip
    }

    /// The `svr-info` we announce.
    pub fn svr_info(&self) -> SvrInfo {
        SvrInfo {
            svr_id: self.me.id.clone(),
            sip: dialog::cluster_uri(self.me.sip),
            xmpp: self.me.xmpp.to_string(),
            admin: self.admin.map(|a| a.to_string()),
        }
    }

    /// A user's address on the cluster domain, as CCMP elements carry it.
    pub fn user_addr(&self, user: &str) -> String {
        format!("{user}@{}", self.config.cluster.domain)
    }

    /// The load a user adds (DESIGN.md §4): `w_users + w_resources * watched`.
    pub fn cost(&self, watched: u64) -> u64 {
        let c = &self.config.cluster;
        c.weight_users + c.weight_resources * watched
    }

    /// The presence resources a reservation announces for a user of this cost.
    pub fn resources_of(&self, cost: u64) -> u32 {
        cost.saturating_sub(self.config.cluster.weight_users) as u32
    }

    /// The entity of the cluster state document: `sip:cluster@<domain>`.
    pub fn state_entity(&self) -> String {
        format!("sip:{CLUSTER_USER}@{}", self.config.cluster.domain)
    }

    /// The primary's `[[node]]` id.
    pub fn primary_id(&self) -> &str {
        &self.config.primary_node().id
    }
}

/// The user records the control plane moves between nodes, behind the store (DESIGN.md §3,
/// §7). The actor implements it over `crate::store::Store`; tests over a map.
pub trait Records {
    /// Presence resources the user watches (roster contacts with a `to` or `both`
    /// subscription): what its placement costs.
    fn watched(&self, user: &str) -> u64;
    /// The user's whole record, `None` without an account.
    fn export(&self, user: &str) -> Result<Option<UserRecord>, ControlError>;
    /// Replaces the user's record with `record` (the primary's copy is the durable one).
    fn import(&self, user: &str, record: &UserRecord) -> Result<(), ControlError>;
}
