//! Placement of a user the edges cannot place themselves (DESIGN.md §4): the request the
//! XMPP session (after SASL) and the SIP edge (before a request reaches a shard) send to the
//! control plane, and its one answer for both protocols. Defined here, below the edges and
//! the control actor, so that the edges hold a `Recipient<Place>` and not the actor.

use actix::Message;

use crate::cluster::ccmp::Protocol;
use crate::cluster::view::NodeAddrs;

/// Where the primary placed a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// Serve the user here.
    Local,
    /// Redirect the client there: XMPP `see-other-host` (or the cxfr iq), SIP `302`.
    Redirect(NodeAddrs),
}

/// Places a user (primary): the XMPP session waits for this after SASL success, the SIP
/// edge before it answers the request or hands it to the presence hub.
#[derive(Debug, Message)]
#[rtype(result = "Placed")]
pub struct Place {
    /// Local part.
    pub user: String,
    /// How the user arrived.
    pub protocol: Protocol,
}
