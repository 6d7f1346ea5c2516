//! Typed `cluster.toml` (DESIGN.md §1, §11).
//!
//! One file describes the whole cluster; a process picks its own `[[node]]` entry with `--id`.
//! Every limit and timer of the node lives here with a default, unknown keys are refused, and
//! every validation error names the key at fault, so a typo never silently falls back to a
//! default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type (toml's message names the key).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, naming the key and position.
        message: String,
    },
    /// A value that parses but cannot be used.
    #[error("{key}: {reason}")]
    Invalid {
        /// Dotted path of the key, e.g. `node[0].xmpp`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The whole `cluster.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Cluster-wide settings.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// XMPP client-to-server settings shared by all nodes.
    #[serde(default)]
    pub xmpp: XmppConfig,
    /// SIP settings shared by all nodes.
    #[serde(default)]
    pub sip: SipConfig,
    /// Limits that protect a node from its users.
    #[serde(default)]
    pub limits: Limits,
    /// Thread and shard counts.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The nodes of the cluster.
    #[serde(default = "default_nodes", rename = "node")]
    pub nodes: Vec<NodeConfig>,
    /// Candidate servers the primary takes (or spawns) when every active one is full.
    #[serde(default, rename = "pool")]
    pub pool: Vec<PoolConfig>,
}

/// How a client is sent to its home server (DESIGN.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedirectMode {
    /// `<see-other-host/>` stream error right after SASL success (RFC 6120 §4.9.3.19).
    SeeOtherHost,
    /// The XEP-0051 `urn:xmpp:cxfr` iq after resource binding.
    Cxfr,
    /// The cxfr iq first; a client that answers it with an error (or ignores it) then gets
    /// `<see-other-host/>`.
    Both,
}

/// `[cluster]`: what every node of the cluster agrees on (DESIGN.md §1, §4, §5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The XMPP domain / SIP domain every user of the cluster belongs to.
    pub domain: String,
    /// The primary's SIP URI (`sip:host:port`); empty = the primary `[[node]]` entry's address.
    pub primary: String,
    /// A server whose load would exceed this after taking a user is full (DESIGN.md §4).
    pub max_load: u64,
    /// Below this mean load the cluster may shrink (scale-in).
    pub min_load: u64,
    /// Load weight of one user with a live session or subscription.
    pub weight_users: u64,
    /// Load weight of one presence resource (watched contact, SIP subscription, publication).
    pub weight_resources: u64,
    /// Every node reports its load this often; three missed reports make it suspect.
    pub report_interval_ms: u64,
    /// A CCMP request (join, reservation) not answered within this fails.
    pub ccmp_timeout_ms: u64,
    /// A node silent for this long is dead: its users are placed anew.
    pub dead_after_ms: u64,
    /// A spawned pool server must answer OPTIONS within this.
    pub spawn_timeout_ms: u64,
    /// `see-other-host`, `cxfr` or `both`.
    pub redirect: RedirectMode,
    /// Shared secret: every CCMP body carries an HMAC-SHA256 under it (DESIGN.md §5).
    pub secret: String,
    /// Largest NOTIFY body of the cluster state document; bigger snapshots go in chunks.
    pub state_chunk_bytes: usize,
    /// Scale-in (DESIGN.md §7): when the mean load of the active servers stays below
    /// `min_load` this long, the least-loaded worker is drained and released; 0 = never.
    pub scale_in_after_s: u64,
    /// After a pool server joins because all were full, move users to it from the most
    /// loaded servers until it reaches the mean load (DESIGN.md §7); false = new users only.
    pub rebalance_on_join: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".into(),
            primary: String::new(),
            max_load: 100,
            min_load: 20,
            weight_users: 1,
            weight_resources: 1,
            report_interval_ms: 1_000,
            ccmp_timeout_ms: 2_000,
            dead_after_ms: 10_000,
            spawn_timeout_ms: 15_000,
            redirect: RedirectMode::SeeOtherHost,
            secret: String::new(),
            state_chunk_bytes: 16_384,
            scale_in_after_s: 300,
            rebalance_on_join: true,
        }
    }
}

/// Whether STARTTLS must be negotiated before authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Clients must negotiate TLS first (RFC 6120 §5.3.1 mandatory-to-negotiate).
    Required,
    /// TLS is offered but not mandatory; allowed only on loopback listeners.
    Optional,
}

/// Whether clients may create accounts in-band (XEP-0077).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone who can reach the listener may register.
    Open,
    /// Accounts are made by the operator (`rendezvous user add`).
    Closed,
}

/// `[xmpp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XmppConfig {
    /// `required` (default) or `optional` (loopback listeners only).
    pub tls: TlsPolicy,
    /// PEM certificate chain; empty = a self-signed one generated in the data dir.
    pub cert: String,
    /// PEM private key matching `cert`.
    pub key: String,
    /// Allow SASL PLAIN on an unencrypted stream (honoured on loopback listeners only).
    pub allow_plain_without_tls: bool,
    /// In-band registration: `open` or `closed` (default).
    pub registration: Registration,
    /// PBKDF2 iterations for newly stored SCRAM credentials (RFC 5802 §5.1; ≥ 4096).
    pub scram_iterations: u32,
}

impl Default for XmppConfig {
    fn default() -> Self {
        Self {
            tls: TlsPolicy::Required,
            cert: String::new(),
            key: String::new(),
            allow_plain_without_tls: false,
            registration: Registration::Closed,
            scram_iterations: 4096,
        }
    }
}

/// Who may watch whose presence over SIP (and, with `domain`, over XMPP too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresencePolicy {
    /// Any user of the cluster domain may watch any other: SIP subscriptions are active at
    /// once and XMPP subscription requests from the domain are approved by the server.
    Domain,
    /// Only contacts the presentity approved (`from`/`both` in its roster) are `active`;
    /// others stay `pending` until the presentity approves (RFC 6121 §3, RFC 6665 §4.2.1.2).
    Roster,
}

/// `[sip]`: the SIP presence server (RFC 3261, RFC 6665, RFC 3856, RFC 3903).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// `roster` (default) or `domain`.
    pub presence_policy: PresencePolicy,
    /// Digest authentication (RFC 3261 §22, RFC 8760) of REGISTER, PUBLISH, SUBSCRIBE and
    /// MESSAGE against the account store.
    pub sip_auth: bool,
    /// RTT estimate T1 (RFC 3261 §17.1.1.1); timers A, B, D, E, F, G, H, J derive from it.
    pub t1_ms: u64,
    /// Maximum retransmit interval T2 for non-INVITE requests and INVITE responses.
    pub t2_ms: u64,
    /// Maximum time a message stays in the network, T4 (timers I and K).
    pub t4_ms: u64,
    /// Expiry given to SUBSCRIBE, PUBLISH and REGISTER without an Expires (RFC 3856 §6.4).
    pub default_expires: u32,
    /// Shorter (non-zero) expiries get `423 Interval Too Brief` with this Min-Expires.
    pub min_expires: u32,
    /// Longer expiries are cut to this.
    pub max_expires: u32,
    /// NOTIFYs for one presentity are sent at most this often; changes in between are
    /// coalesced into the next one (RFC 6665 §4.2.2 rate control).
    pub notify_min_interval_ms: u64,
    /// SIP subscriptions are written to the store this long after they change, in one batch
    /// per shard; one that ends within the delay is never written (0: write at once).
    pub subscription_write_delay_ms: u64,
    /// How long a digest nonce stays fresh; older ones get a new challenge with `stale=true`.
    pub nonce_lifetime_s: u64,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            presence_policy: PresencePolicy::Roster,
            sip_auth: true,
            t1_ms: 500,
            t2_ms: 4_000,
            t4_ms: 5_000,
            default_expires: 3_600,
            min_expires: 60,
            max_expires: 3_600,
            notify_min_interval_ms: 200,
            subscription_write_delay_ms: 100,
            nonce_lifetime_s: 300,
        }
    }
}

/// `[limits]`: every bound a node enforces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent client connections per node; further connections are closed at accept.
    pub max_connections: usize,
    /// Largest stanza (or stream header) in bytes; larger gets `policy-violation`.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza; deeper gets `policy-violation`.
    pub max_stanza_depth: usize,
    /// Roster items per user; more gets a `resource-constraint` error.
    pub max_roster_items: usize,
    /// Messages stored for an offline user; more are bounced with `service-unavailable`.
    pub max_offline_messages: usize,
    /// Bytes of XEP-0049 private XML per user.
    pub max_private_bytes: usize,
    /// Bytes queued towards one client before it is disconnected as a slow reader.
    pub send_queue_bytes: usize,
    /// Time a client may take from connect to bound resource.
    pub negotiation_timeout_ms: u64,
    /// Silence after which the server sends an XEP-0199 ping.
    pub ping_after_ms: u64,
    /// Silence after which the stream is closed with `connection-timeout`.
    pub idle_timeout_ms: u64,
    /// After `see-other-host` sends a moved user's client to its new home, stanzas the
    /// client sent before it saw the redirect are still read and handled this long, until
    /// the client closes its side (RFC 6120 §4.4).
    pub close_wait_ms: u64,
    /// How long the new home of a moved user waits for the old home's hand-over of what
    /// changed there during the move (DESIGN.md §7); subscription stanzas for the user wait
    /// as long, at most `max_roster_items` of them.
    pub move_handover_ms: u64,
    /// Largest SIP message (UDP datagram or TCP frame); larger gets `513` or a closed
    /// connection.
    pub max_sip_message_bytes: usize,
    /// Concurrent SIP TCP connections per node.
    pub max_sip_connections: usize,
    /// Kernel receive buffer of the SIP UDP socket (`SO_RCVBUF`, forced past
    /// `net.core.rmem_max` when the process may): datagrams of a burst beyond it are dropped
    /// by the kernel and cost their senders a retransmission (RFC 3261 Timer E).
    pub sip_udp_receive_buffer_bytes: usize,
    /// SIP subscriptions one watcher may hold; more get `403`.
    pub max_subscriptions_per_user: usize,
    /// Watchers one presentity may have; more get `503`.
    pub max_watchers_per_user: usize,
    /// Live PUBLISH entities per presentity; more get `403`.
    pub max_publications_per_user: usize,
    /// Registered contacts per address-of-record; more get `403`.
    pub max_registrations_per_user: usize,
    /// Largest PIDF body accepted in a PUBLISH.
    pub max_pidf_bytes: usize,
    /// How long a MOE-MP exchange waits for its answer (docs/moe-mp.md §2).
    pub moe_exchange_ttl_s: u64,
    /// Addressees of one MOE-MP broadcast.
    pub moe_max_broadcast: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_stanza_bytes: 256 * 1024,
            max_stanza_depth: 32,
            max_roster_items: 1_000,
            max_offline_messages: 100,
            max_private_bytes: 64 * 1024,
            send_queue_bytes: 512 * 1024,
            negotiation_timeout_ms: 30_000,
            ping_after_ms: 120_000,
            idle_timeout_ms: 300_000,
            close_wait_ms: 2_000,
            move_handover_ms: 5_000,
            max_sip_message_bytes: 64 * 1024,
            sip_udp_receive_buffer_bytes: 8 * 1024 * 1024,
            max_sip_connections: 10_000,
            max_subscriptions_per_user: 1_000,
            max_watchers_per_user: 10_000,
            max_publications_per_user: 16,
            max_registrations_per_user: 16,
            max_pidf_bytes: 16 * 1024,
            moe_exchange_ttl_s: 300,
            moe_max_broadcast: 50,
        }
    }
}

/// `[runtime]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Arbiters (threads) serving connections; 0 = one per core.
    pub workers: usize,
    /// Presence hub shards (each owns a slice of the users); 0 = one per core.
    pub presence_shards: usize,
    /// Mailbox capacity of each presence shard (messages waiting before senders wait).
    pub shard_mailbox: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            presence_shards: 0,
            shard_mailbox: 4096,
        }
    }
}

/// A node's role in the cluster (DESIGN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds the directory and allocates users.
    Primary,
    /// Active member.
    Worker,
    /// Candidate in `[[pool]]`: idle until the primary INVITEs it (or it joins with `--join`).
    Pool,
}

/// One `[[node]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique id of the node.
    pub id: String,
    /// `primary` or `worker`.
    #[serde(default = "default_role")]
    pub role: Role,
    /// XMPP c2s listener (port 0 picks a free port).
    #[serde(default = "default_xmpp_addr")]
    pub xmpp: SocketAddr,
    /// SIP listener, UDP and TCP on the same port (port 0 picks a free port).
    #[serde(default = "default_sip_addr")]
    pub sip: SocketAddr,
    /// HTTP admin API (`/api/cluster`); port 0 picks a free port.
    #[serde(default = "default_admin_addr")]
    pub admin: SocketAddr,
    /// Data directory; default `data/<id>`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

/// One `[[pool]]` entry: a candidate server (DESIGN.md §7).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Unique id (shared with `[[node]]` ids).
    pub id: String,
    /// Its SIP address (UDP and TCP).
    pub sip: SocketAddr,
    /// Its XMPP c2s address.
    pub xmpp: SocketAddr,
    /// Its HTTP admin API.
    #[serde(default = "default_admin_addr")]
    pub admin: SocketAddr,
    /// Data directory; default `data/<id>`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Shell command that starts it when it does not answer OPTIONS (run by the primary).
    #[serde(default)]
    pub spawn: Option<String>,
    /// Shell command that stops it when it is released.
    #[serde(default)]
    pub stop: Option<String>,
}

impl PoolConfig {
    /// The entry as a node the process can run.
    pub fn as_node(&self) -> NodeConfig {
        NodeConfig {
            id: self.id.clone(),
            role: Role::Pool,
            xmpp: self.xmpp,
            sip: self.sip,
            admin: self.admin,
            data_dir: self.data_dir.clone(),
        }
    }
}

fn default_role() -> Role {
    Role::Primary
}

fn default_xmpp_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5222))
}

fn default_sip_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5060))
}

fn default_admin_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5280))
}

/// The built-in single node (DESIGN.md §11).
pub const DEFAULT_NODE_ID: &str = "node1";

fn default_nodes() -> Vec<NodeConfig> {
    vec![NodeConfig {
        id: DEFAULT_NODE_ID.into(),
        role: Role::Primary,
        xmpp: default_xmpp_addr(),
        sip: default_sip_addr(),
        admin: default_admin_addr(),
        data_dir: None,
    }]
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cluster: ClusterConfig::default(),
            xmpp: XmppConfig::default(),
            sip: SipConfig::default(),
            limits: Limits::default(),
            runtime: RuntimeConfig::default(),
            nodes: default_nodes(),
            pool: Vec::new(),
        }
    }
}

impl NodeConfig {
    /// The node's data directory (`data/<id>` unless set).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| Path::new("data").join(&self.id))
    }
}

impl Config {
    /// Parses and validates a configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Loads `path`, or the built-in single-node defaults when `path` is `None` and no
    /// `cluster.toml` exists in the working directory.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from("cluster.toml");
                if !p.exists() {
                    return Ok(Config::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, &path)
    }

    /// The entry `id` names (a `[[node]]` or a `[[pool]]` entry), or the single primary when
    /// `id` is `None`.
    pub fn node(&self, id: Option<&str>) -> Result<NodeConfig, ConfigError> {
        match id {
            Some(id) => self
                .nodes
                .iter()
                .find(|n| n.id == id)
                .cloned()
                .or_else(|| self.pool.iter().find(|p| p.id == id).map(|p| p.as_node()))
                .ok_or_else(|| {
                    invalid(
                        "--id",
                        format!("no [[node]] or [[pool]] entry has id \"{id}\""),
                    )
                }),
            None => Ok(self.primary_node().clone()),
        }
    }

    /// The primary's `[[node]]` entry (validation guarantees there is exactly one).
    pub fn primary_node(&self) -> &NodeConfig {
        self.nodes
            .iter()
            .find(|n| n.role == Role::Primary)
            .expect("validated: one primary")
    }

    /// Whether this configuration describes more than one server.
    pub fn is_cluster(&self) -> bool {
        self.nodes.len() > 1 || !self.pool.is_empty()
    }

    /// The primary's SIP address: `cluster.primary` when set, else its `[[node]]` entry.
    pub fn primary_sip(&self) -> SocketAddr {
        parse_sip_hostport(&self.cluster.primary).unwrap_or(self.primary_node().sip)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let domain = &self.cluster.domain;
        if domain.is_empty()
            || domain.len() > 1023
            || domain.contains(['@', '/', ' '])
            || domain.starts_with('.')
        {
            return Err(invalid(
                "cluster.domain",
                format!("\"{domain}\" is not a domain name"),
            ));
        }
        if self.nodes.is_empty() {
            return Err(invalid("node", "at least one [[node]] entry is needed"));
        }
        let primaries = self
            .nodes
            .iter()
            .filter(|n| n.role == Role::Primary)
            .count();
        if primaries != 1 {
            return Err(invalid(
                "node",
                format!("exactly one node must have role = \"primary\", found {primaries}"),
            ));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.id.is_empty()
                || !node
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    format!("node[{i}].id"),
                    "must be non-empty ASCII letters, digits, '-' or '_'",
                ));
            }
            if self.nodes[..i].iter().any(|n| n.id == node.id) {
                return Err(invalid(
                    format!("node[{i}].id"),
                    format!("duplicate id \"{}\"", node.id),
                ));
            }
            if self.xmpp.tls == TlsPolicy::Optional && !node.xmpp.ip().is_loopback() {
                return Err(invalid(
                    "xmpp.tls",
                    format!(
                        "\"optional\" is allowed only on loopback listeners, but node[{i}].xmpp is {}",
                        node.xmpp
                    ),
                ));
            }
        }
        self.validate_cluster()?;
        if self.xmpp.cert.is_empty() != self.xmpp.key.is_empty() {
            return Err(invalid(
                "xmpp.cert",
                "xmpp.cert and xmpp.key must be given together",
            ));
        }
        if self.xmpp.scram_iterations < 4096 {
            return Err(invalid(
                "xmpp.scram_iterations",
                "must be at least 4096 (RFC 5802 §5.1)",
            ));
        }
        let l = &self.limits;
        let positive = [
            ("limits.max_connections", l.max_connections as u64),
            ("limits.max_stanza_bytes", l.max_stanza_bytes as u64),
            ("limits.max_stanza_depth", l.max_stanza_depth as u64),
            ("limits.send_queue_bytes", l.send_queue_bytes as u64),
            ("limits.negotiation_timeout_ms", l.negotiation_timeout_ms),
            ("limits.ping_after_ms", l.ping_after_ms),
            ("limits.idle_timeout_ms", l.idle_timeout_ms),
            ("limits.close_wait_ms", l.close_wait_ms),
            ("limits.move_handover_ms", l.move_handover_ms),
            ("runtime.shard_mailbox", self.runtime.shard_mailbox as u64),
            ("limits.max_sip_connections", l.max_sip_connections as u64),
            (
                "limits.max_subscriptions_per_user",
                l.max_subscriptions_per_user as u64,
            ),
            (
                "limits.max_watchers_per_user",
                l.max_watchers_per_user as u64,
            ),
            (
                "limits.max_publications_per_user",
                l.max_publications_per_user as u64,
            ),
            (
                "limits.max_registrations_per_user",
                l.max_registrations_per_user as u64,
            ),
            ("limits.max_pidf_bytes", l.max_pidf_bytes as u64),
            ("limits.moe_exchange_ttl_s", l.moe_exchange_ttl_s),
            ("limits.moe_max_broadcast", l.moe_max_broadcast as u64),
            ("sip.t1_ms", self.sip.t1_ms),
            ("sip.t2_ms", self.sip.t2_ms),
            ("sip.t4_ms", self.sip.t4_ms),
            ("sip.min_expires", self.sip.min_expires as u64),
            ("sip.nonce_lifetime_s", self.sip.nonce_lifetime_s),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if l.max_stanza_bytes < 4096 {
            return Err(invalid("limits.max_stanza_bytes", "must be at least 4096"));
        }
        if l.send_queue_bytes < l.max_stanza_bytes {
            return Err(invalid(
                "limits.send_queue_bytes",
                "must be at least limits.max_stanza_bytes, or one stanza could never be sent",
            ));
        }
        if !(65_536..=1 << 30).contains(&l.sip_udp_receive_buffer_bytes) {
            return Err(ConfigError::Invalid {
                key: "limits.sip_udp_receive_buffer_bytes".into(),
                reason: "must be between 65536 and 1073741824".into(),
            });
        }
        if !(1500..=65_536).contains(&l.max_sip_message_bytes) {
            return Err(invalid(
                "limits.max_sip_message_bytes",
                "must be between 1500 and 65536",
            ));
        }
        if self.sip.t2_ms < self.sip.t1_ms {
            return Err(invalid("sip.t2_ms", "must be at least sip.t1_ms"));
        }
        if self.sip.max_expires < self.sip.min_expires {
            return Err(invalid(
                "sip.max_expires",
                "must be at least sip.min_expires",
            ));
        }
        if self.sip.default_expires < self.sip.min_expires
            || self.sip.default_expires > self.sip.max_expires
        {
            return Err(invalid(
                "sip.default_expires",
                "must lie between sip.min_expires and sip.max_expires",
            ));
        }
        if l.idle_timeout_ms <= l.ping_after_ms {
            return Err(invalid(
                "limits.idle_timeout_ms",
                "must be greater than limits.ping_after_ms",
            ));
        }
        Ok(())
    }
}

/// `sip:[user@]ip:port[;params]` (or a bare `ip:port`) as a socket address; inter-node SIP
/// names nodes by address, not by DNS name.
pub fn parse_sip_hostport(uri: &str) -> Option<SocketAddr> {
    let rest = uri.strip_prefix("sip:").unwrap_or(uri);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = rest.split([';', '?', '>']).next()?;
    hostport.parse().ok()
}

impl Config {
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        let positive = [
            ("cluster.max_load", c.max_load),
            ("cluster.report_interval_ms", c.report_interval_ms),
            ("cluster.ccmp_timeout_ms", c.ccmp_timeout_ms),
            ("cluster.dead_after_ms", c.dead_after_ms),
            ("cluster.spawn_timeout_ms", c.spawn_timeout_ms),
            ("cluster.weight_users", c.weight_users),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if c.min_load > c.max_load {
            return Err(invalid(
                "cluster.min_load",
                "must not exceed cluster.max_load",
            ));
        }
        if c.dead_after_ms <= 3 * c.report_interval_ms {
            return Err(invalid(
                "cluster.dead_after_ms",
                "must be longer than three report intervals (a node is suspect first)",
            ));
        }
        if c.state_chunk_bytes < 2048 || c.state_chunk_bytes > 60_000 {
            return Err(invalid(
                "cluster.state_chunk_bytes",
                "must be between 2048 and 60000 (one NOTIFY within the SIP message limit)",
            ));
        }
        if !c.primary.is_empty() && parse_sip_hostport(&c.primary).is_none() {
            return Err(invalid(
                "cluster.primary",
                format!("\"{}\" is not a sip:ip:port URI", c.primary),
            ));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.role == Role::Pool {
                return Err(invalid(
                    format!("node[{i}].role"),
                    "pool servers are listed as [[pool]] entries",
                ));
            }
        }
        for (i, p) in self.pool.iter().enumerate() {
            let key = |k: &str| format!("pool[{i}].{k}");
            if p.id.is_empty()
                || !p
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    key("id"),
                    "must be non-empty ASCII letters, digits, '-' or '_'",
                ));
            }
            if self.nodes.iter().any(|n| n.id == p.id)
                || self.pool[..i].iter().any(|q| q.id == p.id)
            {
                return Err(invalid(key("id"), format!("duplicate id \"{}\"", p.id)));
            }
            for (k, cmd) in [("spawn", &p.spawn), ("stop", &p.stop)] {
                if cmd.as_deref().is_some_and(|c| c.trim().is_empty()) {
                    return Err(invalid(key(k), "must not be empty when given"));
                }
            }
        }
        if self.is_cluster() {
            if c.secret.is_empty() {
                return Err(invalid(
                    "cluster.secret",
                    "a cluster of more than one server needs a shared secret",
                ));
            }
            // Addresses are advertised in redirects and CCMP: they must be reachable ones.
            let nodes = self
                .nodes
                .iter()
                .map(|n| (format!("node \"{}\"", n.id), n.xmpp, n.sip));
            let pool = self
                .pool
                .iter()
                .map(|p| (format!("pool \"{}\"", p.id), p.xmpp, p.sip));
            for (what, xmpp, sip) in nodes.chain(pool) {
                for (k, a) in [("xmpp", xmpp), ("sip", sip)] {
                    if a.ip().is_unspecified() {
                        return Err(invalid(
                            format!("{what} {k}"),
                            format!("{a} cannot be advertised to clients and peers; give the host's address"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_the_single_node_default() {
        let c = parse("").unwrap();
        let n = c.node(None).unwrap();
        assert_eq!(n.id, DEFAULT_NODE_ID);
        assert_eq!(n.xmpp, "127.0.0.1:5222".parse().unwrap());
        assert_eq!(n.data_dir(), Path::new("data/node1"));
        assert_eq!(c.xmpp.tls, TlsPolicy::Required);
        assert_eq!(c.xmpp.registration, Registration::Closed);
    }

    #[test]
    fn shipped_cluster_toml_parses() {
        let text = include_str!("../cluster.toml");
        let c = parse(text).unwrap();
        assert_eq!(c.node(None).unwrap().id, DEFAULT_NODE_ID);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse("[limits]\nmax_stanza_byte = 10\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_stanza_byte"), "{err}");
    }

    #[test]
    fn bad_value_type_is_named() {
        let err = parse("[xmpp]\ntls = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sometimes") || err.contains("tls"), "{err}");
    }

    #[test]
    fn optional_tls_refused_off_loopback() {
        let err =
            parse("[xmpp]\ntls = \"optional\"\n[[node]]\nid = \"a\"\nxmpp = \"0.0.0.0:5222\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("xmpp.tls:"), "{err}");
    }

    #[test]
    fn zero_limit_is_named() {
        let err = parse("[limits]\nmax_connections = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("limits.max_connections:"), "{err}");
    }

    #[test]
    fn sip_settings_are_checked_and_named() {
        let c = parse("").unwrap();
        assert_eq!(c.sip.presence_policy, PresencePolicy::Roster);
        assert!(c.sip.sip_auth);
        assert_eq!((c.sip.t1_ms, c.sip.t2_ms, c.sip.t4_ms), (500, 4000, 5000));
        assert_eq!(c.limits.max_sip_message_bytes, 65_536);
        assert_eq!(c.nodes[0].sip, "127.0.0.1:5060".parse().unwrap());
        let c = parse("[sip]\npresence_policy = \"domain\"\n").unwrap();
        assert_eq!(c.sip.presence_policy, PresencePolicy::Domain);
        let err = parse("[sip]\npresence_policy = \"everyone\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("presence_policy"), "{err}");
        let err = parse("[sip]\nt1_ms = 5000\nt2_ms = 4000\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("sip.t2_ms:"), "{err}");
        let err = parse("[sip]\nmin_expires = 7200\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("sip.max_expires:"), "{err}");
        let err = parse("[limits]\nsip_udp_receive_buffer_bytes = 1000\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("limits.sip_udp_receive_buffer_bytes:"),
            "{err}"
        );
        let err = parse("[limits]\nmax_sip_message_bytes = 100\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("limits.max_sip_message_bytes:"), "{err}");
    }

    #[test]
    fn two_primaries_refused() {
        let err = parse("[[node]]\nid = \"a\"\n[[node]]\nid = \"b\"\nxmpp = \"127.0.0.1:5223\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exactly one node"), "{err}");
    }

    const CLUSTER: &str = "[cluster]\nsecret = \"s3cret\"\nmax_load = 40\nredirect = \"both\"\n\
        [[node]]\nid = \"p\"\nrole = \"primary\"\nxmpp = \"10.1.0.1:5222\"\nsip = \"10.1.0.1:5060\"\n\
        [[node]]\nid = \"w\"\nrole = \"worker\"\nxmpp = \"10.1.0.2:5222\"\nsip = \"10.1.0.2:5060\"\n\
        [[pool]]\nid = \"q\"\nxmpp = \"10.1.0.3:5222\"\nsip = \"10.1.0.3:5060\"\nspawn = \"true\"\n";

    #[test]
    fn cluster_entries_are_found_and_checked() {
        let c = parse(CLUSTER).unwrap();
        assert!(c.is_cluster());
        assert_eq!(c.cluster.redirect, RedirectMode::Both);
        assert_eq!(c.node(None).unwrap().id, "p");
        assert_eq!(c.node(Some("q")).unwrap().role, Role::Pool);
        assert_eq!(c.primary_sip(), "10.1.0.1:5060".parse().unwrap());
        assert_eq!(c.cluster.weight_users, 1);
        assert_eq!(c.cluster.min_load, 20);
        let err = parse(&CLUSTER.replace("secret = \"s3cret\"", ""))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cluster.secret:"), "{err}");
        let err = parse(&CLUSTER.replace("10.1.0.2:5222", "0.0.0.0:5222"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("node \"w\" xmpp"), "{err}");
        let err = parse(&CLUSTER.replace("id = \"q\"", "id = \"w\""))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("pool[0].id:"), "{err}");
        let err = parse(&CLUSTER.replace("max_load = 40", "max_load = 10\nmin_load = 11"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cluster.min_load:"), "{err}");
        let err = parse(&CLUSTER.replace("redirect = \"both\"", "redirect = \"iq\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("redirect"), "{err}");
        let err = parse(&CLUSTER.replace("max_load = 40", "primary = \"sip:nowhere\""))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cluster.primary:"), "{err}");
        assert_eq!(
            parse_sip_hostport("sip:cluster@10.0.0.1:5070;transport=tcp"),
            Some("10.0.0.1:5070".parse().unwrap())
        );
    }

    #[test]
    fn unknown_id_is_named() {
        let c = parse("").unwrap();
        let err = c.node(Some("zz")).unwrap_err().to_string();
        assert!(err.contains("zz"), "{err}");
    }
}
