//! The cluster (DESIGN.md §3–§7): the CCMP-over-SIP control plane between nodes, load levels,
//! the primary's allocator and directory, and the cluster state document.
//!
//! Pure protocol and decision code: [`ccmp`] (RFC 6503 documents with our load extensions),
//! [`state`] (the load-control PIDF of §6), [`allocator`] (placement, §4), [`dialog`] (the
//! control-plane SIP dialogs), [`view`] (what the edges know) and [`control`] (the control
//! plane in sans-IO parts). The actor that owns sockets and timers is `crate::control`.

pub mod allocator;
pub mod ccmp;
pub mod control;
pub mod dialog;
pub mod record;
pub mod state;
pub mod view;
