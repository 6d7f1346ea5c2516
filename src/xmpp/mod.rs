//! XMPP client-to-server: RFC 6120 (core), RFC 6121 (IM and presence), RFC 7622 (addresses)
//! and the XEPs a modern client expects (0030, 0049, 0077, 0160, 0199, 0203), plus the MOE-MP
//! extensions of the rendezvous-server paper (`moe`, docs/moe-mp.md).
//! Pure protocol modules: they import no actix and no sockets; the connections, sessions and
//! the listener that use them are the c2s edge ([`crate::c2s`]).

pub mod disco;
pub mod jid;
pub mod moe;
pub mod private;
pub mod register;
pub mod roster;
pub mod sasl;
pub mod stanza;
pub mod stream;
pub mod subscription;
