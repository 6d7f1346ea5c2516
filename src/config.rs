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
}

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The XMPP domain / SIP domain every user of the cluster belongs to.
    pub domain: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".into(),
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
    /// Largest SIP message (UDP datagram or TCP frame); larger gets `513` or a closed
    /// connection.
    pub max_sip_message_bytes: usize,
    /// Concurrent SIP TCP connections per node.
    pub max_sip_connections: usize,
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
            max_sip_message_bytes: 64 * 1024,
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
    /// Data directory; default `data/<id>`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
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

/// The built-in single node (DESIGN.md §11).
pub const DEFAULT_NODE_ID: &str = "node1";

fn default_nodes() -> Vec<NodeConfig> {
    vec![NodeConfig {
        id: DEFAULT_NODE_ID.into(),
        role: Role::Primary,
        xmpp: default_xmpp_addr(),
        sip: default_sip_addr(),
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

    /// The entry `id` names, or the single primary when `id` is `None`.
    pub fn node(&self, id: Option<&str>) -> Result<&NodeConfig, ConfigError> {
        match id {
            Some(id) => self
                .nodes
                .iter()
                .find(|n| n.id == id)
                .ok_or_else(|| invalid("--id", format!("no [[node]] entry has id \"{id}\""))),
            None => self
                .nodes
                .iter()
                .find(|n| n.role == Role::Primary)
                .ok_or_else(|| invalid("node", "no [[node]] entry has role = \"primary\"")),
        }
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

    #[test]
    fn unknown_id_is_named() {
        let c = parse("").unwrap();
        let err = c.node(Some("zz")).unwrap_err().to_string();
        assert!(err.contains("zz"), "{err}");
    }
}
