//! XMPP client-to-server: RFC 6120 (core), RFC 6121 (IM and presence), RFC 7622 (addresses)
//! and the XEPs a modern client expects (0030, 0049, 0077, 0160, 0199, 0203), plus the MOE-MP
//! extensions of the rendezvous-server paper (`moe`, docs/moe-mp.md).
//! Pure protocol modules (`stream`, `xml`, `jid`, `stanza`, `sasl`, `roster`, `subscription`, `disco`,
//! `register`, `private`, `moe`) import no actix and no sockets; `connection`, `session` and
//! `listener` own the I/O.

pub mod connection;
pub mod disco;
pub mod jid;
pub mod listener;
pub mod moe;
pub mod private;
pub mod register;
pub mod roster;
pub mod sasl;
pub mod session;
pub mod stanza;
pub mod stream;
pub mod subscription;
pub mod tls;
pub mod xml;
