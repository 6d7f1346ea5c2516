//! Presence subscription state machine of RFC 6121 §3 ("Managing Presence Subscriptions")
//! and Appendix A ("Subscription States").
//!
//! Pure: no I/O. The caller looks the contact up in the user's roster, builds the
//! [`SubState`] (A.1), feeds it the subscription stanza and acts on the answer:
//! [`SubState::outbound`] implements the tables of A.2 (a stanza the user sends),
//! [`SubState::inbound`] those of A.3 (a stanza arriving for the user from a contact).
//!
//! Subscription pre-approval (RFC 6121 §3.4) is not supported, so the table rows that
//! would record or cancel a pre-approval ("None", "None + Pending Out" and "To" in
//! A.2.3 / A.2.4) leave the state unchanged and do not route the stanza.

use serde::{Deserialize, Serialize};

/// The `subscription` attribute of a roster item (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subscription {
    /// Neither side is subscribed to the other's presence.
    #[default]
    None,
    /// The user is subscribed to the contact's presence.
    To,
    /// The contact is subscribed to the user's presence.
    From,
    /// Both are subscribed to each other's presence.
    Both,
}

impl Subscription {
    /// The attribute value: "none", "to", "from" or "both".
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// Parses an attribute value; `None` for anything else (including "remove", which is a
    /// roster-set command, not a state).
    pub fn from_attr(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Subscription::None),
            "to" => Some(Subscription::To),
            "from" => Some(Subscription::From),
            "both" => Some(Subscription::Both),
            _ => None,
        }
    }

    /// True for "to" and "both": the user receives the contact's presence.
    pub fn user_sees_contact(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// True for "from" and "both": the contact receives the user's presence.
    pub fn contact_sees_user(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }
}

/// The subscription state of one contact from the user's point of view (RFC 6121 A.1).
///
/// Only nine combinations are defined; the others ("To" or "Both" with a pending outbound
/// request, "From" or "Both" with a pending inbound one) are treated as the defined state
/// obtained by dropping the impossible flag (see [`SubState::normalized`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubState {
    /// The subscription attribute.
    pub sub: Subscription,
    /// The user asked to subscribe and the contact has not answered (`ask='subscribe'`).
    pub pending_out: bool,
    /// The contact asked to subscribe and the user has not answered (kept by the server,
    /// not shown in the roster item, RFC 6121 §3.1.3).
    pub pending_in: bool,
}

/// The four subscription-related values of the presence `type` attribute (RFC 6121 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// Request a subscription to the recipient's presence.
    Subscribe,
    /// Approve the recipient's subscription request.
    Subscribed,
    /// Cancel the sender's subscription to the recipient's presence.
    Unsubscribe,
    /// Deny or cancel the recipient's subscription to the sender's presence.
    Unsubscribed,
}

impl SubKind {
    /// Parses a presence `type` value; `None` when it is not subscription-related.
    pub fn from_type(s: &str) -> Option<Self> {
        match s {
            "subscribe" => Some(SubKind::Subscribe),
            "subscribed" => Some(SubKind::Subscribed),
            "unsubscribe" => Some(SubKind::Unsubscribe),
            "unsubscribed" => Some(SubKind::Unsubscribed),
            _ => None,
        }
    }

    /// The presence `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SubKind::Subscribe => "subscribe",
            SubKind::Subscribed => "subscribed",
            SubKind::Unsubscribe => "unsubscribe",
            SubKind::Unsubscribed => "unsubscribed",
        }
    }
}

/// What the user's server does with a subscription stanza the user sends (RFC 6121 A.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbound {
    /// The new state (equal to the old one when the table says "no state change").
    pub state: SubState,
    /// Stamp the bare JID and route the stanza on to the contact.
    pub route: bool,
    /// The roster item's `subscription` or `ask` changed: a roster push is needed.
    /// (Changes of `pending_in` alone are not visible in the roster; persist whenever
    /// `state` differs from the old state.)
    pub changed: bool,
}

/// What the user's server does with a subscription stanza arriving from a contact
/// (RFC 6121 A.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound {
    /// The new state (equal to the old one when the table says "no state change").
    pub state: SubState,
    /// Deliver the stanza to the user's available resources (or store it if none).
    pub deliver: bool,
    /// The roster item's `subscription` or `ask` changed: a roster push is needed.
    /// (Changes of `pending_in` alone are not visible in the roster; persist whenever
    /// `state` differs from the old state.)
    pub changed: bool,
    /// A stanza the server sends back to the contact on the user's behalf, from the user's
    /// bare JID (RFC 6121 §3.1.3: a subscribe from a contact that is already subscribed is
    /// answered with "subscribed").
    pub auto_reply: Option<SubKind>,
}

/// The nine defined states of RFC 6121 A.1, used to write the tables as the RFC does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defined {
    None,
    NonePendingOut,
    NonePendingIn,
    NonePendingOutIn,
    To,
    ToPendingIn,
    From,
    FromPendingOut,
    Both,
}

impl From<SubState> for Defined {
    fn from(s: SubState) -> Self {
        match (s.sub, s.pending_out, s.pending_in) {
            (Subscription::None, false, false) => Defined::None,
            (Subscription::None, true, false) => Defined::NonePendingOut,
            (Subscription::None, false, true) => Defined::NonePendingIn,
            (Subscription::None, true, true) => Defined::NonePendingOutIn,
            // "To" already subscribed: an outbound request cannot be pending.
            (Subscription::To, _, false) => Defined::To,
            (Subscription::To, _, true) => Defined::ToPendingIn,
            // "From" already approved: an inbound request cannot be pending.
            (Subscription::From, false, _) => Defined::From,
            (Subscription::From, true, _) => Defined::FromPendingOut,
            (Subscription::Both, _, _) => Defined::Both,
        }
    }
}

impl From<Defined> for SubState {
    fn from(d: Defined) -> Self {
        let (sub, pending_out, pending_in) = match d {
            Defined::None => (Subscription::None, false, false),
            Defined::NonePendingOut => (Subscription::None, true, false),
            Defined::NonePendingIn => (Subscription::None, false, true),
            Defined::NonePendingOutIn => (Subscription::None, true, true),
            Defined::To => (Subscription::To, false, false),
            Defined::ToPendingIn => (Subscription::To, false, true),
            Defined::From => (Subscription::From, false, false),
            Defined::FromPendingOut => (Subscription::From, true, false),
            Defined::Both => (Subscription::Both, false, false),
        };
        SubState {
            sub,
            pending_out,
            pending_in,
        }
    }
}

impl SubState {
    /// The nine defined states of RFC 6121 A.1, in the RFC's order.
    pub const DEFINED: [SubState; 9] = [
        SubState::of(Subscription::None, false, false),
        SubState::of(Subscription::None, true, false),
        SubState::of(Subscription::None, false, true),
        SubState::of(Subscription::None, true, true),
        SubState::of(Subscription::To, false, false),
        SubState::of(Subscription::To, false, true),
        SubState::of(Subscription::From, false, false),
        SubState::of(Subscription::From, true, false),
        SubState::of(Subscription::Both, false, false),
    ];

    /// Builds a state from its parts (not normalised; see [`SubState::normalized`]).
    pub const fn of(sub: Subscription, pending_out: bool, pending_in: bool) -> Self {
        SubState {
            sub,
            pending_out,
            pending_in,
        }
    }

    /// The nearest defined state (A.1): drops `pending_out` under "to"/"both" and
    /// `pending_in` under "from"/"both", which cannot be pending there.
    pub fn normalized(self) -> SubState {
        Defined::from(self).into()
    }

    /// The roster item's `subscription` attribute value.
    pub fn subscription_attr(&self) -> &'static str {
        self.sub.as_str()
    }

    /// Whether the roster item carries `ask='subscribe'` (an outbound request is pending).
    pub fn ask(&self) -> bool {
        self.normalized().pending_out
    }

    /// Processes a subscription stanza of kind `k` that the user sends to this contact
    /// (RFC 6121 A.2; also §3.1.2, §3.1.5, §3.2.2, §3.3.2).
    pub fn outbound(self, k: SubKind) -> Outbound {
        use Defined as D;
        let old = Defined::from(self);
        let (route, new) = match k {
            // A.2.1: a subscribe is always routed (§3.1.2).
            SubKind::Subscribe => (
                true,
                match old {
                    D::None => D::NonePendingOut,
                    D::NonePendingIn => D::NonePendingOutIn,
                    D::From => D::FromPendingOut,
                    s => s,
                },
            ),
            // A.2.2: an unsubscribe is always routed (§3.3.2).
            SubKind::Unsubscribe => (
                true,
                match old {
                    D::NonePendingOut | D::To => D::None,
                    D::NonePendingOutIn | D::ToPendingIn => D::NonePendingIn,
                    D::FromPendingOut | D::Both => D::From,
                    s => s,
                },
            ),
            // A.2.3: an approval is routed only when it answers a pending inbound request
            // (§3.1.5); the other rows would be pre-approvals (§3.4), which we do not keep.
            SubKind::Subscribed => match old {
                D::NonePendingIn => (true, D::From),
                D::NonePendingOutIn => (true, D::FromPendingOut),
                D::ToPendingIn => (true, D::Both),
                s => (false, s),
            },
            // A.2.4: a denial or cancellation is routed when it removes a pending inbound
            // request or the contact's subscription (§3.2.2).
            SubKind::Unsubscribed => match old {
                D::NonePendingIn => (true, D::None),
                D::NonePendingOutIn => (true, D::NonePendingOut),
                D::ToPendingIn => (true, D::To),
                D::From => (true, D::None),
                D::FromPendingOut => (true, D::NonePendingOut),
                D::Both => (true, D::To),
                s => (false, s),
            },
        };
        Outbound {
            state: new.into(),
            route,
            changed: visible_change(old, new),
        }
    }

    /// Processes a subscription stanza of kind `k` that arrives for the user from this
    /// contact (RFC 6121 A.3; also §3.1.3, §3.1.6, §3.2.3, §3.3.3).
    pub fn inbound(self, k: SubKind) -> Inbound {
        use Defined as D;
        let old = Defined::from(self);
        let (deliver, new, auto_reply) = match k {
            // A.3.1 / §3.1.3: a new request is delivered; a repeated one is not; a request
            // from a contact that is already subscribed is answered by the server.
            SubKind::Subscribe => match old {
                D::None => (true, D::NonePendingIn, None),
                D::NonePendingOut => (true, D::NonePendingOutIn, None),
                D::To => (true, D::ToPendingIn, None),
                D::From | D::FromPendingOut | D::Both => (false, old, Some(SubKind::Subscribed)),
                s => (false, s, None),
            },
            // A.3.2 / §3.3.3: removes the contact's subscription or pending request.
            SubKind::Unsubscribe => match old {
                D::NonePendingIn => (true, D::None, None),
                D::NonePendingOutIn => (true, D::NonePendingOut, None),
                D::ToPendingIn => (true, D::To, None),
                D::From => (true, D::None, None),
                D::FromPendingOut => (true, D::NonePendingOut, None),
                D::Both => (true, D::To, None),
                s => (false, s, None),
            },
            // A.3.3 / §3.1.6: an approval counts only if the user asked.
            SubKind::Subscribed => match old {
                D::NonePendingOut => (true, D::To, None),
                D::NonePendingOutIn => (true, D::ToPendingIn, None),
                D::FromPendingOut => (true, D::Both, None),
                s => (false, s, None),
            },
            // A.3.4 / §3.2.3: denies the user's request or cancels the user's subscription.
            SubKind::Unsubscribed => match old {
                D::NonePendingOut | D::To => (true, D::None, None),
                D::NonePendingOutIn | D::ToPendingIn => (true, D::NonePendingIn, None),
                D::FromPendingOut | D::Both => (true, D::From, None),
                s => (false, s, None),
            },
        };
        Inbound {
            state: new.into(),
            deliver,
            changed: visible_change(old, new),
            auto_reply,
        }
    }
}

/// True when the roster item's `subscription` or `ask` differs between the two states.
fn visible_change(old: Defined, new: Defined) -> bool {
    let (a, b) = (SubState::from(old), SubState::from(new));
    a.sub != b.sub || a.pending_out != b.pending_out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Subscription as S;

    const N: SubState = SubState::of(S::None, false, false);
    const NPO: SubState = SubState::of(S::None, true, false);
    const NPI: SubState = SubState::of(S::None, false, true);
    const NPOI: SubState = SubState::of(S::None, true, true);
    const T: SubState = SubState::of(S::To, false, false);
    const TPI: SubState = SubState::of(S::To, false, true);
    const F: SubState = SubState::of(S::From, false, false);
    const FPO: SubState = SubState::of(S::From, true, false);
    const B: SubState = SubState::of(S::Both, false, false);

    use SubKind::{
        Subscribe as Sub, Subscribed as Subd, Unsubscribe as Unsub, Unsubscribed as Unsubd,
    };

    /// RFC 6121 A.2.1-A.2.4: (existing state, stanza, route?, new state).
    const OUTBOUND: [(SubState, SubKind, bool, SubState); 36] = [
        // A.2.1 Subscribe
        (N, Sub, true, NPO),
        (NPO, Sub, true, NPO),
        (NPI, Sub, true, NPOI),
        (NPOI, Sub, true, NPOI),
        (T, Sub, true, T),
        (TPI, Sub, true, TPI),
        (F, Sub, true, FPO),
        (FPO, Sub, true, FPO),
        (B, Sub, true, B),
        // A.2.2 Unsubscribe
        (N, Unsub, true, N),
        (NPO, Unsub, true, N),
        (NPI, Unsub, true, NPI),
        (NPOI, Unsub, true, NPI),
        (T, Unsub, true, N),
        (TPI, Unsub, true, NPI),
        (F, Unsub, true, F),
        (FPO, Unsub, true, F),
        (B, Unsub, true, F),
        // A.2.3 Subscribed (pre-approval rows: no state change, not routed)
        (N, Subd, false, N),
        (NPO, Subd, false, NPO),
        (NPI, Subd, true, F),
        (NPOI, Subd, true, FPO),
        (T, Subd, false, T),
        (TPI, Subd, true, B),
        (F, Subd, false, F),
        (FPO, Subd, false, FPO),
        (B, Subd, false, B),
        // A.2.4 Unsubscribed
        (N, Unsubd, false, N),
        (NPO, Unsubd, false, NPO),
        (NPI, Unsubd, true, N),
        (NPOI, Unsubd, true, NPO),
        (T, Unsubd, false, T),
        (TPI, Unsubd, true, T),
        (F, Unsubd, true, N),
        (FPO, Unsubd, true, NPO),
        (B, Unsubd, true, T),
    ];

    /// RFC 6121 A.3.1-A.3.4: (existing state, stanza, deliver?, new state, auto-reply).
    const INBOUND: [(SubState, SubKind, bool, SubState, Option<SubKind>); 36] = [
        // A.3.1 Subscribe
        (N, Sub, true, NPI, None),
        (NPO, Sub, true, NPOI, None),
        (NPI, Sub, false, NPI, None),
        (NPOI, Sub, false, NPOI, None),
        (T, Sub, true, TPI, None),
        (TPI, Sub, false, TPI, None),
        (F, Sub, false, F, Some(Subd)),
        (FPO, Sub, false, FPO, Some(Subd)),
        (B, Sub, false, B, Some(Subd)),
        // A.3.2 Unsubscribe
        (N, Unsub, false, N, None),
        (NPO, Unsub, false, NPO, None),
        (NPI, Unsub, true, N, None),
        (NPOI, Unsub, true, NPO, None),
        (T, Unsub, false, T, None),
        (TPI, Unsub, true, T, None),
        (F, Unsub, true, N, None),
        (FPO, Unsub, true, NPO, None),
        (B, Unsub, true, T, None),
        // A.3.3 Subscribed
        (N, Subd, false, N, None),
        (NPO, Subd, true, T, None),
        (NPI, Subd, false, NPI, None),
        (NPOI, Subd, true, TPI, None),
        (T, Subd, false, T, None),
        (TPI, Subd, false, TPI, None),
        (F, Subd, false, F, None),
        (FPO, Subd, true, B, None),
        (B, Subd, false, B, None),
        // A.3.4 Unsubscribed
        (N, Unsubd, false, N, None),
        (NPO, Unsubd, true, N, None),
        (NPI, Unsubd, false, NPI, None),
        (NPOI, Unsubd, true, NPI, None),
        (T, Unsubd, true, N, None),
        (TPI, Unsubd, true, NPI, None),
        (F, Unsubd, false, F, None),
        (FPO, Unsubd, true, F, None),
        (B, Unsubd, true, F, None),
    ];

    fn visible(a: SubState, b: SubState) -> bool {
        a.sub != b.sub || a.pending_out != b.pending_out
    }

    #[test]
    fn outbound_table_a2() {
        for (i, &(old, kind, route, new)) in OUTBOUND.iter().enumerate() {
            let out = old.outbound(kind);
            assert_eq!(
                out,
                Outbound {
                    state: new,
                    route,
                    changed: visible(old, new)
                },
                "row {i}: outbound {} in {old:?}",
                kind.as_str()
            );
        }
    }

    #[test]
    fn inbound_table_a3() {
        for (i, &(old, kind, deliver, new, auto_reply)) in INBOUND.iter().enumerate() {
            let inb = old.inbound(kind);
            assert_eq!(
                inb,
                Inbound {
                    state: new,
                    deliver,
                    changed: visible(old, new),
                    auto_reply
                },
                "row {i}: inbound {} in {old:?}",
                kind.as_str()
            );
        }
    }

    #[test]
    fn tables_cover_every_state_and_kind() {
        let kinds = [Sub, Subd, Unsub, Unsubd];
        for s in SubState::DEFINED {
            for k in kinds {
                assert_eq!(
                    OUTBOUND.iter().filter(|r| r.0 == s && r.1 == k).count(),
                    1,
                    "outbound {s:?} {k:?}"
                );
                assert_eq!(
                    INBOUND.iter().filter(|r| r.0 == s && r.1 == k).count(),
                    1,
                    "inbound {s:?} {k:?}"
                );
            }
        }
    }

    #[test]
    fn changed_flags_follow_roster_visible_attributes() {
        // RFC 6121 §3.1.3: an inbound request creates no roster item, so no push.
        assert!(!N.inbound(Sub).changed);
        // §3.1.5: approving it does.
        assert!(NPI.outbound(Subd).changed);
        // Denying a pending request changes nothing visible.
        assert!(!NPI.outbound(Unsubd).changed);
        assert!(T.outbound(Unsub).changed);
    }

    #[test]
    fn undefined_combinations_are_normalised() {
        let to_ask = SubState::of(S::To, true, false);
        assert_eq!(to_ask.normalized(), T);
        assert!(!to_ask.ask());
        let both_all = SubState::of(S::Both, true, true);
        assert_eq!(both_all.normalized(), B);
        assert_eq!(both_all.inbound(Sub).auto_reply, Some(Subd));
        let from_in = SubState::of(S::From, true, true);
        assert_eq!(from_in.normalized(), FPO);
        assert!(!from_in.outbound(Subd).route);
        for s in SubState::DEFINED {
            assert_eq!(s.normalized(), s);
        }
    }

    #[test]
    fn attributes() {
        assert_eq!(NPO.subscription_attr(), "none");
        assert!(NPO.ask());
        assert!(!NPI.ask());
        assert_eq!(FPO.subscription_attr(), "from");
        assert!(FPO.ask());
        assert_eq!(B.subscription_attr(), "both");
        assert_eq!(TPI.subscription_attr(), "to");
        assert!(S::To.user_sees_contact() && S::Both.user_sees_contact());
        assert!(!S::From.user_sees_contact() && !S::None.user_sees_contact());
        assert!(S::From.contact_sees_user() && S::Both.contact_sees_user());
        assert!(!S::To.contact_sees_user() && !S::None.contact_sees_user());
    }

    #[test]
    fn sub_kind_type_values() {
        for k in [Sub, Subd, Unsub, Unsubd] {
            assert_eq!(SubKind::from_type(k.as_str()), Some(k));
        }
        assert_eq!(SubKind::from_type("unavailable"), None);
        assert_eq!(SubKind::from_type("Subscribe"), None);
        assert_eq!(SubKind::from_type(""), None);
    }

    #[test]
    fn subscription_serde_and_attr() {
        for (s, text) in [
            (S::None, "none"),
            (S::To, "to"),
            (S::From, "from"),
            (S::Both, "both"),
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<S>(&format!("\"{text}\"")).unwrap(),
                s
            );
            assert_eq!(s.as_str(), text);
            assert_eq!(S::from_attr(text), Some(s));
        }
        assert!(serde_json::from_str::<S>("\"None\"").is_err());
        assert_eq!(S::from_attr("remove"), None);
        assert_eq!(S::default(), S::None);
    }
}
