//! SIP-specific event notification headers and rules: the `Event` header (RFC 6665 §7.2,
//! §8.2.1 grammar and matching), `Allow-Events` (§8.2.2), `Subscription-State` (§4.1.3,
//! §8.2.3) and the expiry negotiation of SUBSCRIBE (§3.1.1, §4.2.1, 423 with Min-Expires)
//! which PUBLISH shares (RFC 3903 §6, Expires processing). The presence package name and
//! default duration come from RFC 3856 §4.

use std::fmt;

use crate::sip::grammar::{
    delta_seconds, generic_param, is_lws, is_token, is_token_char, split_unquoted, trim_lws,
    ParamError,
};

/// The `presence` event package (RFC 3856 §4): the one package this server notifies.
pub const PRESENCE: &str = "presence";

/// Default subscription duration of the presence package in seconds (RFC 3856 §4),
/// used when a SUBSCRIBE carries no Expires header.
pub const PRESENCE_DEFAULT_EXPIRES: u32 = 3600;

/// A parsed `Event` header value (RFC 6665 §8.2.1); the package plus `id` identify one
/// subscription within a dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event-type (package and templates, e.g. `presence` or `presence.winfo`), kept as
    /// written because §8.2.1 compares it byte by byte; registered names are lowercase.
    pub package: String,
    /// The `id` parameter, distinguishing several subscriptions in one dialog.
    pub id: Option<String>,
    /// Other parameters, names lowercased, values as written (quoted strings keep quotes).
    pub params: Vec<(String, Option<String>)>,
}

impl Event {
    /// Parses an `Event` header value such as `presence` or `foo; id=1234`.
    pub fn parse(value: &str) -> Result<Event, EventError> {
        const HEADER: &str = "Event";
        let mut parts = split_params(value, HEADER)?.into_iter();
        let head = parts.next().unwrap_or_default();
        if head.is_empty() {
            return Err(EventError::Empty(HEADER));
        }
        if !is_event_type(head) {
            return Err(EventError::BadEventType {
                header: HEADER,
                value: head.to_owned(),
            });
        }
        let mut id = None;
        let mut params = Vec::new();
        for part in parts {
            let (name, val) = parse_param(part, HEADER)?;
            if name == "id" {
                if id.is_some() {
                    return Err(EventError::DuplicateParam {
                        header: HEADER,
                        param: name,
                    });
                }
                match val {
                    Some(v) if is_token(&v) => id = Some(v),
                    _ => {
                        return Err(EventError::BadParam {
                            header: HEADER,
                            param: name,
                        })
                    }
                }
            } else {
                params.push((name, val));
            }
        }
        Ok(Event {
            package: head.to_owned(),
            id,
            params,
        })
    }

    /// True when `other` names the same subscription (RFC 6665 §8.2.1): equal event-type
    /// byte for byte and equal `id` (both absent or both equal); other parameters ignored.
    pub fn matches(&self, other: &Event) -> bool {
        self.package == other.package && self.id == other.id
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.package)?;
        if let Some(id) = &self.id {
            write!(f, ";id={id}")?;
        }
        for (name, value) in &self.params {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        Ok(())
    }
}

/// Parses an `Allow-Events` value (RFC 6665 §8.2.2) into its event-types, as written, so a
/// subscriber can see which packages a peer supports.
pub fn parse_allow_events(value: &str) -> Result<Vec<String>, EventError> {
    const HEADER: &str = "Allow-Events";
    if value.trim().is_empty() {
        return Err(EventError::Empty(HEADER));
    }
    value
        .split(',')
        .map(|item| {
            let item = trim_lws(item);
            if is_event_type(item) {
                Ok(item.to_owned())
            } else {
                Err(EventError::BadEventType {
                    header: HEADER,
                    value: item.to_owned(),
                })
            }
        })
        .collect()
}

/// Why a subscription was terminated (RFC 6665 §4.1.3, `event-reason-value`); tells the
/// subscriber whether and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `deactivated`: retry immediately.
    Deactivated,
    /// `probation`: retry later (after `retry-after` if given).
    Probation,
    /// `rejected`: do not retry.
    Rejected,
    /// `timeout`: the subscription was not refreshed; retry immediately.
    Timeout,
    /// `giveup`: the notifier could not get authorization in time; retry later.
    Giveup,
    /// `noresource`: the resource no longer exists; do not retry.
    Noresource,
    /// `invariant`: the state will not change; do not retry.
    Invariant,
}

impl Reason {
    /// The token as written in the `reason` parameter.
    pub fn token(&self) -> &'static str {
        match self {
            Reason::Deactivated => "deactivated",
            Reason::Probation => "probation",
            Reason::Rejected => "rejected",
            Reason::Timeout => "timeout",
            Reason::Giveup => "giveup",
            Reason::Noresource => "noresource",
            Reason::Invariant => "invariant",
        }
    }

    /// Parses a reason token case-insensitively; `None` for extensions we do not know.
    pub fn parse(s: &str) -> Option<Reason> {
        const ALL: [Reason; 7] = [
            Reason::Deactivated,
            Reason::Probation,
            Reason::Rejected,
            Reason::Timeout,
            Reason::Giveup,
            Reason::Noresource,
            Reason::Invariant,
        ];
        ALL.into_iter().find(|r| r.token().eq_ignore_ascii_case(s))
    }
}

/// A `Subscription-State` value (RFC 6665 §4.1.3): what every NOTIFY says about the
/// subscription it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionState {
    /// `active;expires=N`: authorized, N seconds left.
    Active {
        /// Seconds left on the subscription.
        expires: u32,
    },
    /// `pending;expires=N`: received, authorization not decided yet.
    Pending {
        /// Seconds left on the subscription.
        expires: u32,
    },
    /// `terminated[;reason=..][;retry-after=N]`: over.
    Terminated {
        /// Why; `None` when absent or an unknown extension (treated alike by §4.1.3).
        reason: Option<Reason>,
        /// Seconds to wait before re-subscribing, if the notifier said.
        retry_after: Option<u32>,
    },
}

impl SubscriptionState {
    /// Parses a `Subscription-State` value. `active` and `pending` must carry `expires`
    /// (the notifier MUST include it, §4.2.2); extension substates are refused.
    pub fn parse(value: &str) -> Result<Self, EventError> {
        const HEADER: &str = "Subscription-State";
        let mut parts = split_params(value, HEADER)?.into_iter();
        let head = parts.next().unwrap_or_default();
        if head.is_empty() {
            return Err(EventError::Empty(HEADER));
        }
        let mut expires = None;
        let mut reason = None;
        let mut retry_after = None;
        for part in parts {
            let (name, val) = parse_param(part, HEADER)?;
            let slot = match name.as_str() {
                "expires" => &mut expires,
                "reason" => &mut reason,
                "retry-after" => &mut retry_after,
                _ => continue,
            };
            if slot.is_some() {
                return Err(EventError::DuplicateParam {
                    header: HEADER,
                    param: name,
                });
            }
            match val {
                Some(v) => *slot = Some(v),
                None => {
                    return Err(EventError::BadParam {
                        header: HEADER,
                        param: name,
                    })
                }
            }
        }
        let seconds = |v: Option<String>, param: &str| -> Result<Option<u32>, EventError> {
            v.map(|v| {
                delta_seconds(&v).ok_or_else(|| EventError::BadParam {
                    header: HEADER,
                    param: param.to_owned(),
                })
            })
            .transpose()
        };
        let expires = seconds(expires, "expires")?;
        let retry_after = seconds(retry_after, "retry-after")?;
        if head.eq_ignore_ascii_case("active") || head.eq_ignore_ascii_case("pending") {
            let expires = expires.ok_or_else(|| EventError::MissingExpires(head.to_owned()))?;
            if head.eq_ignore_ascii_case("active") {
                Ok(SubscriptionState::Active { expires })
            } else {
                Ok(SubscriptionState::Pending { expires })
            }
        } else if head.eq_ignore_ascii_case("terminated") {
            Ok(SubscriptionState::Terminated {
                reason: reason.as_deref().and_then(Reason::parse),
                retry_after,
            })
        } else {
            Err(EventError::UnknownState(head.to_owned()))
        }
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionState::Active { expires } => write!(f, "active;expires={expires}"),
            SubscriptionState::Pending { expires } => write!(f, "pending;expires={expires}"),
            SubscriptionState::Terminated {
                reason,
                retry_after,
            } => {
                f.write_str("terminated")?;
                if let Some(r) = reason {
                    write!(f, ";reason={}", r.token())?;
                }
                if let Some(s) = retry_after {
                    write!(f, ";retry-after={s}")?;
                }
                Ok(())
            }
        }
    }
}

/// Why an event header was refused; each variant names the header (and parameter) at fault.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    /// The header value is empty.
    #[error("empty {0} header")]
    Empty(&'static str),
    /// The event-type is not `token-nodot *("." token-nodot)`.
    #[error("malformed event type `{value}` in {header}")]
    BadEventType {
        /// The header being parsed.
        header: &'static str,
        /// The offending event-type.
        value: String,
    },
    /// A parameter is not `token [= token / quoted-string]`, or a known one has a bad value.
    #[error("malformed parameter `{param}` in {header}")]
    BadParam {
        /// The header being parsed.
        header: &'static str,
        /// The parameter name (or the raw text when no name could be read).
        param: String,
    },
    /// A parameter with meaning (`id`, `expires`, `reason`, `retry-after`) appears twice.
    #[error("duplicate parameter `{param}` in {header}")]
    DuplicateParam {
        /// The header being parsed.
        header: &'static str,
        /// The repeated parameter name.
        param: String,
    },
    /// A substate other than active / pending / terminated.
    #[error("unknown Subscription-State value `{0}`")]
    UnknownState(String),
    /// `active` or `pending` without `expires`.
    #[error("Subscription-State `{0}` without expires parameter")]
    MissingExpires(String),
}

/// The 423 (Interval Too Brief) outcome of [`grant_expires`]: the response carries
/// `Min-Expires: min_expires`.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
#[error("Expires below Min-Expires {min_expires}")]
pub struct TooBrief {
    /// The value for the Min-Expires header of the 423.
    pub min_expires: u32,
}

/// Expiry negotiation for SUBSCRIBE (and PUBLISH, RFC 3903 §4.1 uses the same shape):
/// None → default; 0 → Ok(0) (unsubscribe / fetch); below min → Err(TooBrief { min_expires }) (423);
/// above max → max.
pub fn grant_expires(
    requested: Option<u32>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, TooBrief> {
    match requested {
        None => Ok(default),
        Some(0) => Ok(0),
        Some(s) if s < min => Err(TooBrief { min_expires: min }),
        Some(s) => Ok(s.min(max)),
    }
}

/// RFC 6665 §8.2.1 `event-type = event-package *( "." event-template )`.
fn is_event_type(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            // token-nodot: a token without "."
            !part.is_empty() && part.bytes().all(|b| is_token_char(b) && b != b'.')
        })
}

/// Splits a header value on `;` outside quoted strings, trimming each part; an unclosed
/// quoted string is refused, naming the rest of the value.
fn split_params<'a>(value: &'a str, header: &'static str) -> Result<Vec<&'a str>, EventError> {
    split_unquoted(value, ';')
        .map(|part| match part {
            Ok(part) => Ok(trim_lws(part)),
            Err(rest) => Err(EventError::BadParam {
                header,
                param: trim_lws(rest).to_owned(),
            }),
        })
        .collect()
}

/// Parses `generic-param = token [ EQUAL gen-value ]`, gen-value = token / host /
/// quoted-string; the name is lowercased, the value kept as written.
fn parse_param(part: &str, header: &'static str) -> Result<(String, Option<String>), EventError> {
    match generic_param(part, is_lws) {
        Ok((name, value)) => Ok((name.to_ascii_lowercase(), value.map(str::to_owned))),
        Err(ParamError::BadName) => Err(EventError::BadParam {
            header,
            param: part.to_owned(),
        }),
        Err(ParamError::BadValue { name }) => Err(EventError::BadParam {
            header,
            param: name.to_ascii_lowercase(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::junk::junk_inputs;

    #[test]
    fn event_simple_and_with_id() {
        assert_eq!(
            Event::parse("presence"),
            Ok(Event {
                package: "presence".into(),
                id: None,
                params: vec![],
            })
        );
        let e = Event::parse("foo; id=1234").expect("parses");
        assert_eq!(e.package, "foo");
        assert_eq!(e.id.as_deref(), Some("1234"));
        assert_eq!(e.to_string(), "foo;id=1234");
        let e = Event::parse("presence.winfo;Param=\"a;b\";flag").expect("parses");
        assert_eq!(e.package, "presence.winfo");
        assert_eq!(
            e.params,
            vec![
                ("param".into(), Some("\"a;b\"".into())),
                ("flag".into(), None)
            ]
        );
        assert_eq!(e.to_string(), "presence.winfo;param=\"a;b\";flag");
    }

    /// RFC 6665 §8.2.1: "Event: foo; id=1234" matches "Event: foo; param=abcd; id=1234" but
    /// not "Event: foo" nor "Event: Foo; id=1234".
    #[test]
    fn event_matching_rfc6665_examples() {
        let ours = Event::parse("foo; id=1234").expect("parses");
        assert!(ours.matches(&Event::parse("foo; param=abcd; id=1234").expect("parses")));
        assert!(!ours.matches(&Event::parse("foo").expect("parses")));
        assert!(!ours.matches(&Event::parse("Foo; id=1234").expect("parses")));
    }

    #[test]
    fn event_errors() {
        assert_eq!(Event::parse(""), Err(EventError::Empty("Event")));
        assert_eq!(Event::parse("  ;id=1"), Err(EventError::Empty("Event")));
        assert_eq!(
            Event::parse("pres ence"),
            Err(EventError::BadEventType {
                header: "Event",
                value: "pres ence".into()
            })
        );
        assert_eq!(
            Event::parse("presence..winfo"),
            Err(EventError::BadEventType {
                header: "Event",
                value: "presence..winfo".into()
            })
        );
        assert_eq!(
            Event::parse("presence;id=1;id=2"),
            Err(EventError::DuplicateParam {
                header: "Event",
                param: "id".into()
            })
        );
        assert_eq!(
            Event::parse("presence;id"),
            Err(EventError::BadParam {
                header: "Event",
                param: "id".into()
            })
        );
        assert_eq!(
            Event::parse("presence;x=\"open"),
            Err(EventError::BadParam {
                header: "Event",
                param: "x=\"open".into()
            })
        );
        assert_eq!(
            Event::parse("presence;x=\"a\" \"b\""),
            Err(EventError::BadParam {
                header: "Event",
                param: "x".into()
            })
        );
        assert_eq!(
            Event::parse("presence;=3"),
            Err(EventError::BadParam {
                header: "Event",
                param: "=3".into()
            })
        );
        assert_eq!(
            Event::parse("presence;a=b c"),
            Err(EventError::BadParam {
                header: "Event",
                param: "a".into()
            })
        );
    }

    #[test]
    fn allow_events() {
        assert_eq!(
            parse_allow_events("presence, presence.winfo ,dialog"),
            Ok(vec![
                "presence".to_owned(),
                "presence.winfo".to_owned(),
                "dialog".to_owned()
            ])
        );
        assert_eq!(
            parse_allow_events(" "),
            Err(EventError::Empty("Allow-Events"))
        );
        assert_eq!(
            parse_allow_events("presence,,dialog"),
            Err(EventError::BadEventType {
                header: "Allow-Events",
                value: String::new()
            })
        );
    }

    #[test]
    fn subscription_state_parse() {
        assert_eq!(
            SubscriptionState::parse("active;expires=60"),
            Ok(SubscriptionState::Active { expires: 60 })
        );
        assert_eq!(
            SubscriptionState::parse("Pending ; expires = 3600"),
            Ok(SubscriptionState::Pending { expires: 3600 })
        );
        assert_eq!(
            SubscriptionState::parse("terminated;reason=probation;retry-after=1800"),
            Ok(SubscriptionState::Terminated {
                reason: Some(Reason::Probation),
                retry_after: Some(1800)
            })
        );
        assert_eq!(
            SubscriptionState::parse("terminated"),
            Ok(SubscriptionState::Terminated {
                reason: None,
                retry_after: None
            })
        );
        // unknown reason is treated like none (RFC 6665 §4.1.3); expires ignored when terminated
        assert_eq!(
            SubscriptionState::parse("terminated;reason=moved;expires=5;foo=\"b;r\""),
            Ok(SubscriptionState::Terminated {
                reason: None,
                retry_after: None
            })
        );
        assert_eq!(
            SubscriptionState::parse("active;expires=99999999999"),
            Ok(SubscriptionState::Active { expires: u32::MAX })
        );
    }

    #[test]
    fn subscription_state_errors() {
        assert_eq!(
            SubscriptionState::parse(""),
            Err(EventError::Empty("Subscription-State"))
        );
        assert_eq!(
            SubscriptionState::parse("active"),
            Err(EventError::MissingExpires("active".into()))
        );
        assert_eq!(
            SubscriptionState::parse("waiting;expires=5"),
            Err(EventError::UnknownState("waiting".into()))
        );
        assert_eq!(
            SubscriptionState::parse("active;expires=-1"),
            Err(EventError::BadParam {
                header: "Subscription-State",
                param: "expires".into()
            })
        );
        assert_eq!(
            SubscriptionState::parse("active;expires"),
            Err(EventError::BadParam {
                header: "Subscription-State",
                param: "expires".into()
            })
        );
        assert_eq!(
            SubscriptionState::parse("active;expires=5;expires=6"),
            Err(EventError::DuplicateParam {
                header: "Subscription-State",
                param: "expires".into()
            })
        );
        assert_eq!(
            SubscriptionState::parse("terminated;retry-after=soon"),
            Err(EventError::BadParam {
                header: "Subscription-State",
                param: "retry-after".into()
            })
        );
    }

    #[test]
    fn subscription_state_display_round_trip() {
        let cases = [
            (
                SubscriptionState::Active { expires: 3599 },
                "active;expires=3599",
            ),
            (
                SubscriptionState::Pending { expires: 10 },
                "pending;expires=10",
            ),
            (
                SubscriptionState::Terminated {
                    reason: Some(Reason::Timeout),
                    retry_after: None,
                },
                "terminated;reason=timeout",
            ),
            (
                SubscriptionState::Terminated {
                    reason: Some(Reason::Giveup),
                    retry_after: Some(30),
                },
                "terminated;reason=giveup;retry-after=30",
            ),
            (
                SubscriptionState::Terminated {
                    reason: None,
                    retry_after: None,
                },
                "terminated",
            ),
        ];
        for (state, text) in cases {
            assert_eq!(state.to_string(), text);
            assert_eq!(SubscriptionState::parse(text), Ok(state));
        }
    }

    #[test]
    fn reasons_round_trip() {
        for r in [
            Reason::Deactivated,
            Reason::Probation,
            Reason::Rejected,
            Reason::Timeout,
            Reason::Giveup,
            Reason::Noresource,
            Reason::Invariant,
        ] {
            assert_eq!(Reason::parse(&r.token().to_ascii_uppercase()), Some(r));
        }
        assert_eq!(Reason::parse("moved"), None);
    }

    #[test]
    fn grant_expires_rules() {
        assert_eq!(grant_expires(None, 3600, 60, 7200), Ok(3600));
        assert_eq!(grant_expires(Some(0), 3600, 60, 7200), Ok(0));
        assert_eq!(
            grant_expires(Some(59), 3600, 60, 7200),
            Err(TooBrief { min_expires: 60 })
        );
        assert_eq!(grant_expires(Some(60), 3600, 60, 7200), Ok(60));
        assert_eq!(grant_expires(Some(7201), 3600, 60, 7200), Ok(7200));
        assert_eq!(grant_expires(Some(u32::MAX), 3600, 60, 7200), Ok(7200));
    }

    #[test]
    fn never_panics_on_junk() {
        for input in junk_inputs() {
            let _ = Event::parse(&input);
            let _ = SubscriptionState::parse(&input);
            let _ = SubscriptionState::parse(&format!("active;{input}"));
            let _ = parse_allow_events(&input);
        }
    }
}
