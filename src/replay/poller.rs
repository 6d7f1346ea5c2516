//! Samples the live cluster through the primary's admin API (`GET /api/cluster`, the
//! cluster state document of DESIGN §6 as JSON): how many servers are active and the load
//! of each, every [`POLL_EVERY`], for as long as the replay runs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Time between two samples.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// One request gives up after this.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// The part of the cluster state the replay reads.
#[derive(Debug, Deserialize)]
struct State {
    servers: Vec<Server>,
    active: u32,
}

#[derive(Debug, Deserialize)]
struct Server {
    id: String,
    current: u64,
    max: u64,
}

/// One sample of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Since the start of the replay.
    pub t: Duration,
    /// `active-svr-number`.
    pub active: u32,
    /// Load of every live server (id → current load level).
    pub loads: BTreeMap<String, u64>,
    /// The cluster's `max_load`.
    pub max_load: u64,
}

/// What the poller saw.
#[derive(Debug, Default)]
pub struct Samples {
    /// Every successful sample, in time order.
    pub samples: Vec<Sample>,
    /// Requests that failed (connect, timeout, status, JSON), with the first reason.
    pub failed: u64,
    /// The first failure's message.
    pub first_failure: Option<String>,
}

impl Samples {
    /// Highest load seen per server.
    pub fn max_load_seen(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for s in &self.samples {
            for (id, &l) in &s.loads {
                let e = out.entry(id.clone()).or_default();
                *e = (*e).max(l);
            }
        }
        out
    }

    /// Active servers at `t`: the last sample at or before it (0 before the first).
    pub fn active_at(&self, t: Duration) -> u32 {
        let i = self.samples.partition_point(|s| s.t <= t);
        if i == 0 {
            0
        } else {
            self.samples[i - 1].active
        }
    }

    /// The cluster's `max_load` as the admin API reports it (the last sample's).
    pub fn max_load(&self) -> Option<u64> {
        self.samples.last().map(|s| s.max_load)
    }
}

/// Parses one `/api/cluster` body.
pub fn parse(t: Duration, body: &[u8]) -> Result<Sample, String> {
    let st: State = serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))?;
    Ok(Sample {
        t,
        active: st.active,
        max_load: st.servers.iter().map(|s| s.max).max().unwrap_or(0),
        loads: st.servers.into_iter().map(|s| (s.id, s.current)).collect(),
    })
}

/// One sample now.
pub async fn sample_once(admin: &str, t: Duration) -> Result<Sample, String> {
    match crate::http::request(admin, "GET", "/api/cluster", None, POLL_TIMEOUT).await {
        Ok((200, body)) => parse(t, &body),
        Ok((status, _)) => Err(format!("GET /api/cluster on {admin}: status {status}")),
        Err(e) => Err(format!("GET /api/cluster on {admin}: {e}")),
    }
}

/// Polls `admin` every [`POLL_EVERY`] until `until` (bounded by it), appending to `out`.
pub async fn poll(admin: String, start: Instant, until: Instant, out: Rc<RefCell<Samples>>) {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < until {
        tick.tick().await;
        let r = sample_once(&admin, start.elapsed()).await;
        let mut o = out.borrow_mut();
        match r {
            Ok(s) => o.samples.push(s),
            Err(e) => {
                o.failed += 1;
                o.first_failure.get_or_insert(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_state_document_and_tracks_maxima() {
        let body = br#"{"version":7,"kind":"full","chunk":1,"chunks":1,
            "servers":[{"id":"primary","current":98,"max":100},{"id":"p1","current":40,"max":100}],
            "candidates":["sip:10.0.0.3:5060"],"active":2,"users":[],"total_users":138,"removed":[]}"#;
        let s = parse(Duration::from_millis(500), body).unwrap();
        assert_eq!(s.active, 2);
        assert_eq!(s.max_load, 100);
        assert_eq!(s.loads["primary"], 98);
        let mut all = Samples::default();
        all.samples.push(s.clone());
        let mut later = s;
        later.t = Duration::from_secs(1);
        later.active = 3;
        later.loads.insert("p1".into(), 70);
        later.loads.insert("primary".into(), 60);
        all.samples.push(later);
        let m = all.max_load_seen();
        assert_eq!((m["primary"], m["p1"]), (98, 70));
        assert_eq!(all.active_at(Duration::from_millis(100)), 0);
        assert_eq!(all.active_at(Duration::from_millis(700)), 2);
        assert_eq!(all.active_at(Duration::from_secs(5)), 3);
        assert!(parse(Duration::ZERO, b"{}").is_err());
    }
}
