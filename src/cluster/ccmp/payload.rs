//! The load-control payload elements of an `extendedRequest` / `extendedResponse`
//! (DESIGN.md §5), in [`LOAD_NS`](super::LOAD_NS).

/// The protocol a user is connected with, as written in `protocol` (`xmpp` / `sip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// An XMPP client (text `xmpp`).
    Xmpp,
    /// A SIP user agent (text `sip`).
    Sip,
}

impl Protocol {
    /// The wire text: `xmpp` or `sip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Xmpp => "xmpp",
            Protocol::Sip => "sip",
        }
    }

    /// Reads the wire text, ignoring ASCII case and surrounding whitespace.
    pub fn from_name(text: &str) -> Option<Protocol> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("xmpp") {
            Some(Protocol::Xmpp)
        } else if text.eq_ignore_ascii_case("sip") {
            Some(Protocol::Sip)
        } else {
            None
        }
    }
}

/// One `<load:curr-load-level>` of a `pressvr-load` report: a server's load (DESIGN.md §4)
/// and the figures it was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadLevel {
    /// The server (`svr-id` attribute).
    pub svr_id: String,
    /// The load level (element text).
    pub level: u64,
    /// Users homed on the server (`users` attribute; 0 when absent).
    pub users: u64,
    /// Registered presence resources (`resources` attribute; 0 when absent).
    pub resources: u64,
    /// The reporter's counter, so that a late report cannot overwrite a newer one
    /// (`version` attribute; 0 when absent).
    pub version: u64,
}

/// One `<load:user>` of `pres-sys-users`: a user homed on the reporting server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysUser {
    /// The user's address (`id` attribute, e.g. `alice@example.com`).
    pub user: String,
    /// How the user is connected (`protocol` attribute).
    pub protocol: Protocol,
    /// The user's presence resources (`resources` attribute; 0 when absent).
    pub resources: u32,
}

/// A `<load:svr-info>`: the addresses a joining node announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvrInfo {
    /// The node id (`svr-id` attribute).
    pub svr_id: String,
    /// Its SIP URI (`sip` attribute, e.g. `sip:w1@10.0.0.2:5060`).
    pub sip: String,
    /// Its XMPP client address, `host:port` (`xmpp` attribute).
    pub xmpp: String,
    /// Its admin HTTP address, `host:port` (`admin` attribute), if it serves one.
    pub admin: Option<String>,
}

/// One payload element of an `extendedRequest` / `extendedResponse`, in [`LOAD_NS`](super::LOAD_NS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// `<load:pressvr-load>` with one `<load:curr-load-level>` per server.
    PressvrLoad(Vec<LoadLevel>),
    /// `<load:pres-sys-users svr-id=".." full="..">`: the users of a server, with
    /// `<load:user>` for present users and `<load:gone id=".."/>` for departed ones.
    PresSysUsers {
        /// The server (`svr-id` attribute).
        svr_id: String,
        /// `full` attribute: `true` when `present` is the complete list (absent = `true`,
        /// the paper's meaning), `false` for a change since the last report.
        full: bool,
        /// The `<load:user>` children.
        present: Vec<SysUser>,
        /// The `id` of each `<load:gone>` child.
        gone: Vec<String>,
    },
    /// `<load:redirection-usr-addr>`: reserve a user on the receiving server before the
    /// primary redirects the client there (DESIGN.md §4, two-phase placement).
    RedirectionUsrAddr {
        /// `<load:user-addr>`: the user's address.
        user: String,
        /// `<load:protocol>`: how the user connects.
        protocol: Protocol,
        /// `<load:resource-number>` (0 when absent).
        resources: u32,
        /// `<load:user-record>`: the user's stored record, base64 on the wire.
        record: Option<Vec<u8>>,
        /// `<load:moved-from>` (ours): the `svr-id` the user moves away from (DESIGN.md §7),
        /// which hands over what changed there after `record` was taken; absent for a
        /// placement.
        moved_from: Option<String>,
    },
    /// `<load:svr-pool>` with one `<load:svr-uri>` per candidate server.
    SvrPool(Vec<String>),
    /// `<load:actv-svr-nums>`: the number of active servers.
    ActvSvrNums(u32),
    /// `<load:max-load>`: the load a server may reach.
    MaxLoad(u64),
    /// `<load:min-load>`: the mean load under which the cluster scales in.
    MinLoad(u64),
    /// `<load:user-update>`: write-through of a user's record to the primary (DESIGN.md §3).
    UserUpdate {
        /// `<load:user-addr>`: the user's address.
        user: String,
        /// `<load:user-record>`: the record, base64 on the wire.
        record: Vec<u8>,
    },
    /// `<load:migrate-user>`: move a user to another server (DESIGN.md §7).
    MigrateUser {
        /// `<load:user-addr>`: the user's address.
        user: String,
        /// `<load:svr-id>`: the new home.
        svr_id: String,
    },
    /// `<load:drain svr-id=".."/>`: empty a server before it leaves (DESIGN.md §7).
    Drain {
        /// The server to drain (`svr-id` attribute).
        svr_id: String,
    },
    /// `<load:svr-info .../>`: a joining node's addresses.
    SvrInfo(SvrInfo),
}

impl Element {
    /// The element's local name in [`LOAD_NS`](super::LOAD_NS) (e.g. `pressvr-load`).
    pub fn name(&self) -> &'static str {
        match self {
            Element::PressvrLoad(_) => "pressvr-load",
            Element::PresSysUsers { .. } => "pres-sys-users",
            Element::RedirectionUsrAddr { .. } => "redirection-usr-addr",
            Element::SvrPool(_) => "svr-pool",
            Element::ActvSvrNums(_) => "actv-svr-nums",
            Element::MaxLoad(_) => "max-load",
            Element::MinLoad(_) => "min-load",
            Element::UserUpdate { .. } => "user-update",
            Element::MigrateUser { .. } => "migrate-user",
            Element::Drain { .. } => "drain",
            Element::SvrInfo(_) => "svr-info",
        }
    }
}
