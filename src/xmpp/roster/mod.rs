//! Rosters (RFC 6121 §2): the model the server keeps ([`model`]) and the wire format of
//! `jabber:iq:roster` ([`wire`]).

pub mod model;
pub mod wire;

pub use model::{merge3_map, PendingContact, PendingIn, Roster, RosterItem};
pub use wire::{
    item_element, parse_roster_set, push, query, removed_item_element, RosterSet, MAX_NAME_BYTES,
    ROSTER_NS,
};
