//! The Via header (RFC 3261 §20.42, §18.2.1 `received`, §18.2.2 where responses go;
//! RFC 3581 §4 `rport`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::uri::{parse_hostport, unbracket};
use super::{ParseError, BRANCH_COOKIE};
use crate::sip::grammar::{is_wsp, parse_digits, parse_params, take_token, write_params};

/// Top Via (RFC 3261 §20.42, §18.2.1; RFC 3581 rport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token, uppercased: "UDP", "TCP", "TLS", "SCTP", "WS", ...
    pub transport: String,
    /// Host of sent-by as written; an IPv6 reference keeps its brackets (`[::1]`).
    pub host: String,
    /// Port of sent-by, if given.
    pub port: Option<u16>,
    /// The branch parameter.
    pub branch: Option<String>,
    /// The received parameter.
    pub received: Option<String>,
    /// The rport parameter; `Some(None)` = "rport" without value (RFC 3581 §3).
    pub rport: Option<Option<u16>>,
    /// All params incl. the above, in order; this list is what `Display` writes.
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// Parses one Via value (one element of a possibly comma-joined Via header); only SIP/2.0.
    pub fn parse(value: &str) -> Result<Via, ParseError> {
        parse_via(value, false)
    }

    /// "host:port" or "host": the sent-by as it should be compared and re-serialised.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{}", self.host, port),
            None => self.host.clone(),
        }
    }

    /// True if the branch starts with the RFC 3261 magic cookie "z9hG4bK" (§8.1.1.7).
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch
            .as_deref()
            .is_some_and(|b| b.starts_with(BRANCH_COOKIE))
    }

    /// RFC 3261 §18.2.2 + RFC 3581 §4: where a response to this Via goes (host, port).
    ///
    /// Order: `maddr` (with the sent-by port), then `received` (with the `rport` value if one was
    /// filled in, else the sent-by port), then sent-by. The port defaults to 5061 for TLS and 5060
    /// otherwise. IPv6 hosts come back without brackets so `(host, port)` resolves directly. Over
    /// TCP/TLS the response should first go back on the connection the request came on.
    pub fn response_target(&self) -> (String, u16) {
        let default_port = if self.transport.eq_ignore_ascii_case("TLS") {
            5061
        } else {
            5060
        };
        let sent_by_port = self.port.unwrap_or(default_port);
        if let Some(Some(maddr)) = self.param("maddr") {
            return (unbracket(maddr).to_owned(), sent_by_port);
        }
        let rport = match self.rport {
            Some(Some(port)) => Some(port),
            _ => None,
        };
        if let Some(received) = &self.received {
            return (
                unbracket(received).to_owned(),
                rport.unwrap_or(sent_by_port),
            );
        }
        (
            unbracket(&self.host).to_owned(),
            rport.unwrap_or(sent_by_port),
        )
    }

    /// RFC 3261 §18.2.1 + RFC 3581 §4: records where the request really came from.
    ///
    /// Adds (or overwrites) `received` when sent-by is a name or a different address, and always
    /// when `rport` is present; fills `rport` with the source port when present. A new `received`
    /// goes just before `rport` (as in the RFC 3581 example), else at the end.
    pub fn stamp(&mut self, source: SocketAddr) {
        let ip = source.ip().to_canonical();
        let sent_by_ip = unbracket(&self.host).parse::<IpAddr>().ok();
        if self.rport.is_some() || sent_by_ip != Some(ip) {
            let value = ip.to_string();
            if let Some(slot) = self.param_slot("received") {
                slot.1 = Some(value.clone());
            } else {
                let at = self
                    .params
                    .iter()
                    .position(|(n, _)| n.eq_ignore_ascii_case("rport"))
                    .unwrap_or(self.params.len());
                self.params
                    .insert(at, ("received".to_owned(), Some(value.clone())));
            }
            self.received = Some(value);
        }
        if self.rport.is_some() {
            let port = source.port();
            if let Some(slot) = self.param_slot("rport") {
                slot.1 = Some(port.to_string());
            }
            self.rport = Some(Some(port));
        }
    }

    /// Value of the first param called `name` (case-insensitive): `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    fn param_slot(&mut self, name: &str) -> Option<&mut (String, Option<String>)> {
        self.params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write_params(f, &self.params)
    }
}

pub(super) fn parse_via(value: &str, any_version: bool) -> Result<Via, ParseError> {
    via_inner(value, any_version).ok_or(ParseError::MalformedHeader("Via"))
}

fn via_inner(value: &str, any_version: bool) -> Option<Via> {
    let s = value.trim_matches(is_wsp);
    let (name, rest) = take_token(s)?;
    if !name.eq_ignore_ascii_case("SIP") {
        return None;
    }
    let rest = rest.trim_start_matches(is_wsp).strip_prefix('/')?;
    let (version, rest) = take_token(rest.trim_start_matches(is_wsp))?;
    if !any_version && version != "2.0" {
        return None;
    }
    let rest = rest.trim_start_matches(is_wsp).strip_prefix('/')?;
    let (transport, rest) = take_token(rest.trim_start_matches(is_wsp))?;
    if !rest.starts_with(is_wsp) {
        return None;
    }
    let rest = rest.trim_start_matches(is_wsp);
    let end = rest.find(';').unwrap_or(rest.len());
    let (host, port) = parse_hostport(rest[..end].trim_end_matches(is_wsp))?;
    let params = parse_params(&rest[end..])?;
    let mut via = Via {
        transport: transport.to_ascii_uppercase(),
        host,
        port,
        branch: None,
        received: None,
        rport: None,
        params,
    };
    for (name, value) in &via.params {
        if name.eq_ignore_ascii_case("branch") && via.branch.is_none() {
            via.branch = Some(value.clone()?);
        } else if name.eq_ignore_ascii_case("received") && via.received.is_none() {
            via.received = Some(value.clone()?);
        } else if name.eq_ignore_ascii_case("rport") && via.rport.is_none() {
            via.rport = Some(match value {
                None => None,
                Some(v) if v.len() <= 5 => Some(u16::try_from(parse_digits(v)?).ok()?),
                Some(_) => return None,
            });
        }
    }
    Some(via)
}
