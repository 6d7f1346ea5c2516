//! `rendezvous loadgen`: virtual XMPP and SIP users driving a server or a cluster over real
//! sockets, measuring what their users would feel (issue 7). Every loop is bounded by count
//! and by time.
//!
//! - [`stats`]: latency histograms (HDR) and counters, JSON-ready summaries.

pub mod stats;
