//! RPID activities: the `<rpid:activities>` vocabulary of RFC 4480 §3.2, in the
//! RPID namespace `urn:ietf:params:xml:ns:pidf:rpid`.
//!
//! Only the activity values are modelled; the PIDF parser in [`crate::pidf`] reads
//! them from a `<dm:person>` and writes them back. Pure code, no I/O.

/// The RPID namespace (RFC 4480), bound to the `rpid` prefix when serialised.
pub const NS: &str = "urn:ietf:params:xml:ns:pidf:rpid";

/// One RFC 4480 §3.2 activity, so that callers (the RFC 8048 mapping) can match on
/// a closed set instead of comparing element names.
///
/// Unknown activity elements (a name RFC 4480 does not define, or an element in
/// another namespace inside `<rpid:activities>`) are parsed as
/// [`Activity::Other`] carrying their local name, so no activity is silently lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// `<rpid:appointment/>`: a scheduled appointment.
    Appointment,
    /// `<rpid:away/>`: physically away from all communication devices.
    Away,
    /// `<rpid:breakfast/>`: eating breakfast.
    Breakfast,
    /// `<rpid:busy/>`: busy with an activity not listed elsewhere.
    Busy,
    /// `<rpid:dinner/>`: having dinner.
    Dinner,
    /// `<rpid:holiday/>`: a scheduled national or local holiday.
    Holiday,
    /// `<rpid:in-transit/>`: riding in a vehicle.
    InTransit,
    /// `<rpid:looking-for-work/>`: looking for (paid) work.
    LookingForWork,
    /// `<rpid:lunch/>`: eating lunch.
    Lunch,
    /// `<rpid:meal/>`: eating a meal.
    Meal,
    /// `<rpid:meeting/>`: in an assembly or gathering.
    Meeting,
    /// `<rpid:on-the-phone/>`: talking on the phone.
    OnThePhone,
    /// `<rpid:other>text</rpid:other>`: an activity described in free text (also
    /// used for activity elements this module does not know, holding their local name).
    Other(String),
    /// `<rpid:performance/>`: a performance in a theater, concert or similar.
    Performance,
    /// `<rpid:permanent-absence/>`: will not return for the foreseeable future.
    PermanentAbsence,
    /// `<rpid:playing/>`: occupying oneself in amusement, sport or recreation.
    Playing,
    /// `<rpid:presentation/>`: giving a presentation or lecture.
    Presentation,
    /// `<rpid:shopping/>`: visiting stores.
    Shopping,
    /// `<rpid:sleeping/>`: sleeping.
    Sleeping,
    /// `<rpid:spectator/>`: observing an event.
    Spectator,
    /// `<rpid:steering/>`: controlling a vehicle, watercraft or plane.
    Steering,
    /// `<rpid:travel/>`: on a business or personal trip.
    Travel,
    /// `<rpid:tv/>`: watching television.
    Tv,
    /// `<rpid:unknown/>`: the activity is not known.
    Unknown,
    /// `<rpid:vacation/>`: a scheduled absence for recreation.
    Vacation,
    /// `<rpid:working/>`: engaged in work.
    Working,
    /// `<rpid:worship/>`: participating in religious rites.
    Worship,
}

/// Every named activity with its RFC 4480 element name, in schema order.
const NAMES: [(&str, Activity); 26] = [
    ("appointment", Activity::Appointment),
    ("away", Activity::Away),
    ("breakfast", Activity::Breakfast),
    ("busy", Activity::Busy),
    ("dinner", Activity::Dinner),
    ("holiday", Activity::Holiday),
    ("in-transit", Activity::InTransit),
    ("looking-for-work", Activity::LookingForWork),
    ("lunch", Activity::Lunch),
    ("meal", Activity::Meal),
    ("meeting", Activity::Meeting),
    ("on-the-phone", Activity::OnThePhone),
    ("performance", Activity::Performance),
    ("permanent-absence", Activity::PermanentAbsence),
    ("playing", Activity::Playing),
    ("presentation", Activity::Presentation),
    ("shopping", Activity::Shopping),
    ("sleeping", Activity::Sleeping),
    ("spectator", Activity::Spectator),
    ("steering", Activity::Steering),
    ("travel", Activity::Travel),
    ("tv", Activity::Tv),
    ("unknown", Activity::Unknown),
    ("vacation", Activity::Vacation),
    ("working", Activity::Working),
    ("worship", Activity::Worship),
];

impl Activity {
    /// The activity for an RPID element local name (`"on-the-phone"` →
    /// [`Activity::OnThePhone`]); `"other"` gives `Other("")` for the caller to fill
    /// with the element's text, and any name RFC 4480 does not define gives `None`.
    pub fn from_name(local: &str) -> Option<Activity> {
        if local == "other" {
            return Some(Activity::Other(String::new()));
        }
        NAMES
            .iter()
            .find(|(name, _)| *name == local)
            .map(|(_, activity)| activity.clone())
    }

    /// The RPID element local name this activity is written as (`"other"` for
    /// [`Activity::Other`], whose text goes in the element content).
    pub fn name(&self) -> &str {
        match self {
            Activity::Other(_) => "other",
            known => NAMES
                .iter()
                .find(|(_, activity)| activity == known)
                .map_or("other", |(name, _)| name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rfc4480_name_round_trips() {
        for (name, activity) in &NAMES {
            assert_eq!(Activity::from_name(name).as_ref(), Some(activity));
            assert_eq!(activity.name(), *name);
        }
        assert_eq!(Activity::OnThePhone.name(), "on-the-phone");
        assert_eq!(
            Activity::from_name("permanent-absence"),
            Some(Activity::PermanentAbsence)
        );
    }

    #[test]
    fn other_and_unknown_names() {
        assert_eq!(
            Activity::from_name("other"),
            Some(Activity::Other(String::new()))
        );
        assert_eq!(Activity::Other("brooding".into()).name(), "other");
        assert_eq!(Activity::from_name("juggling"), None);
        assert_eq!(
            Activity::from_name("Away"),
            None,
            "names are case-sensitive"
        );
        assert_eq!(Activity::from_name(""), None);
    }
}
