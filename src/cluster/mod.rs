//! The cluster (DESIGN.md §3–§7): the CCMP-over-SIP control plane between nodes, load levels,
//! the primary's allocator and directory, and the cluster state document.
//!
//! Pure protocol and decision code: [`ccmp`] (RFC 6503 documents with our load extensions),
//! [`state`] (the load-control PIDF of §6) and [`allocator`] (placement, §4). The actors that
//! own sockets and timers live beside them.

pub mod admin;
pub mod allocator;
pub mod ccmp;
pub mod control;
pub mod dialog;
pub mod dispatch;
pub mod record;
pub mod state;
pub mod view;
