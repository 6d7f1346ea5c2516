//! What every shard shares about SIP once the transport is bound: the sender (used only by
//! the shard shell, which performs the parts' effects) and the state the SIP part reads
//! ([`SipShared`]: digest nonces, RFC 3261 timer values, subscriptions per watcher).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::sip::digest::Nonces;
use crate::sip::transaction::Timers;
use crate::sip::transport::SipSender;

/// What every shard shares about SIP, set once the transport is bound.
pub struct SipRuntime {
    /// Sends SIP messages.
    pub sender: SipSender,
    /// What the SIP part of each shard reads.
    pub(crate) shared: SipShared,
}

/// The shared SIP state the SIP part of a shard reads (no socket: unit tests build one).
pub(crate) struct SipShared {
    /// The node's SIP address (Via, Contact).
    pub(crate) local_addr: SocketAddr,
    /// Stateless digest nonces (RFC 3261 §22.4), keyed per node run.
    pub(crate) nonces: Nonces,
    /// RFC 3261 timer base values.
    pub(crate) timers: Timers,
    /// Subscriptions each watcher holds, over all shards (`limits.max_subscriptions_per_user`).
    pub(crate) watching: Mutex<HashMap<String, usize>>,
}

impl SipShared {
    /// The shared state of a node whose SIP transport listens on `local_addr`.
    pub(crate) fn new(local_addr: SocketAddr, config: &crate::config::SipConfig) -> Self {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        SipShared {
            local_addr,
            nonces: Nonces::new(key),
            timers: Timers {
                t1: Duration::from_millis(config.t1_ms),
                t2: Duration::from_millis(config.t2_ms),
                t4: Duration::from_millis(config.t4_ms),
            },
            watching: Mutex::new(HashMap::new()),
        }
    }
}

impl SipRuntime {
    /// A runtime around a bound transport.
    pub fn new(sender: SipSender, config: &crate::config::SipConfig) -> Self {
        let shared = SipShared::new(sender.local_addr(), config);
        SipRuntime { sender, shared }
    }
}
