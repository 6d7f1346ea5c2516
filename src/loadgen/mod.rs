//! `rendezvous loadgen`: virtual XMPP and SIP users driving a server or a cluster over real
//! sockets, measuring what their users would feel (issue 7). It speaks plain standard XMPP
//! (RFC 6120/6121, XEP-0077) and SIP (RFC 3261/3903/6665/3863), so it drives other servers
//! too. Every loop is bounded by count and by time; Ctrl-C stops the run, logs out and still
//! writes the summary.
//!
//! One process, one thread: a current-thread tokio runtime runs every virtual user as a
//! local task (an XMPP user owns its TCP stream; SIP users are multiplexed over a few UDP
//! sockets, see [`sip`]); only the SCRAM key derivation (PBKDF2) goes to blocking threads.
//!
//! Phases: register (XEP-0077) → login (and the SIP users' initial PUBLISH and SUBSCRIBEs) →
//! roster setup → hold → warm-up → measure (one step, or the ramp's steps, each followed by
//! a bounded drain) → logout → summary.
//!
//! - [`options`]: the command line and its validation.
//! - [`stats`]: latency histograms (HDR) and counters.
//! - [`summary`]: the JSON summary and its human form.
//! - the SCRAM client is the one in [`crate::xmpp::sasl::scram::client`] (pure).
//! - [`xmpp_wire`], [`sip_wire`]: what goes on the wire (pure).
//! - `xmpp`, `sip`: the virtual users (I/O).
pub mod options;
pub mod sip_wire;
pub mod stats;
pub mod summary;
pub mod xmpp_wire;

mod error;
mod net;
mod orchestrate;
mod progress;
mod report;
mod run;
mod sip;
mod xmpp;

pub use error::LoadgenError;
pub use options::{Options, ProgressMode, Ramp, SaslChoice, Settings};
pub use orchestrate::run;
pub(crate) use orchestrate::{orchestrate_shared, raise_fd_limit, register_all};
pub(crate) use run::Run;
pub use summary::Summary;
