//! Measurements of a load run: latency histograms (HDR, microsecond resolution, 3
//! significant digits), counters by kind, and their JSON-ready summaries. Pure: no I/O, no
//! clocks of its own (callers pass durations).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram holds (longer ones are clamped to it): 60 s.
const MAX_MICROS: u64 = 60_000_000;

/// A latency histogram (HDR: every value within 0.1 % of what was recorded).
#[derive(Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Latency {
        Latency {
            hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid HDR bounds"),
        }
    }

    /// Records one latency (clamped to 1 µs .. 60 s).
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, MAX_MICROS);
        // Within bounds by the clamp: saturating_record never fails.
        self.hist.saturating_record(us);
    }

    /// Adds another histogram's values (e.g. one per task, merged at the end).
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Count and percentiles in milliseconds; zeros when nothing was recorded.
    pub fn summary(&self) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.hist.len(),
            p50_ms: ms(self.hist.value_at_quantile(0.50)),
            p90_ms: ms(self.hist.value_at_quantile(0.90)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            max_ms: ms(self.hist.max()),
            mean_ms: self.hist.mean() / 1000.0,
        }
    }
}

/// What a [`Latency`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, in milliseconds.
    pub p90_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
    /// Largest value, in milliseconds.
    pub max_ms: f64,
    /// Mean, in milliseconds.
    pub mean_ms: f64,
}

/// Counts by kind (error kinds, SIP response codes per method, ...), sorted by key in the
/// summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Counts(BTreeMap<String, u64>);

impl Counts {
    /// Adds `n` to `kind`.
    pub fn add(&mut self, kind: impl Into<String>, n: u64) {
        *self.0.entry(kind.into()).or_insert(0) += n;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (k, v) in &other.0 {
            self.add(k.clone(), *v);
        }
    }

    /// The count of `kind` (0 when never added).
    pub fn get(&self, kind: &str) -> u64 {
        self.0.get(kind).copied().unwrap_or(0)
    }

    /// The sum of all counts.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `count` events over `secs` seconds, 0 when no time passed.
pub fn per_second(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut l = Latency::new();
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        // HDR keeps 3 significant digits: within 0.1 %.
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn merged_histograms_count_both_and_out_of_range_values_are_clamped() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        a.record(Duration::from_nanos(10)); // below 1 µs
        b.record(Duration::from_secs(3600)); // above 60 s
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 2);
        assert!((s.max_ms - 60_000.0).abs() < 60.0, "{s:?}");
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }

    #[test]
    fn counts_add_merge_and_total() {
        let mut c = Counts::default();
        c.add("PUBLISH 200", 3);
        let mut d = Counts::default();
        d.add("PUBLISH 200", 1);
        d.add("timeout", 2);
        c.merge(&d);
        assert_eq!(c.get("PUBLISH 200"), 4);
        assert_eq!(c.total(), 6);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"PUBLISH 200":4,"timeout":2}"#
        );
        assert_eq!(per_second(10, 0.0), 0.0);
        assert_eq!(per_second(10, 2.0), 5.0);
    }
}
