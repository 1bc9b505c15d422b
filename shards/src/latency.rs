//! Latency tracking: a histogram of every command's execution time (`latency-tracking`, behind
//! INFO latencystats and LATENCY HISTOGRAM) and the latency monitor's events (`command`,
//! `fast-command` past `latency-monitor-threshold`, behind LATENCY LATEST / HISTORY / RESET).
//!
//! Histograms are HDR histograms with Redis's parameters (1 ns to 1 s, 2 significant digits),
//! kept per shard and added together when asked, so percentiles are those of all shards' calls.
//! Event series keep, as Redis does, the 160 latest samples, one per second (the worst of that
//! second), and the worst ever.

use crate::cmd::Lookup;
use crate::resp::Reply;
pub use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap, VecDeque};

const HIST_MIN_NS: u64 = 1;
const HIST_MAX_NS: u64 = 1_000_000_000;
const HIST_SIGFIG: u8 = 2;
const SERIES_LEN: usize = 160;

/// A new histogram with Redis's bounds.
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(HIST_MIN_NS, HIST_MAX_NS, HIST_SIGFIG)
        .unwrap_or_else(|_| Histogram::new(HIST_SIGFIG).unwrap_or_else(|_| unreachable!()))
}

/// One event's samples: (unix seconds, milliseconds), oldest first, and the worst ever.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub samples: VecDeque<(u64, u64)>,
    pub max_ms: u64,
}

impl Series {
    pub fn add(&mut self, time_s: u64, ms: u64) {
        self.max_ms = self.max_ms.max(ms);
        if let Some(last) = self.samples.back_mut() {
            if last.0 == time_s {
                last.1 = last.1.max(ms);
                return;
            }
        }
        self.samples.push_back((time_s, ms));
        if self.samples.len() > SERIES_LEN {
            self.samples.pop_front();
        }
    }

    /// Another shard's series of the same event, merged in time order.
    pub fn merge(&mut self, other: &Series) {
        self.max_ms = self.max_ms.max(other.max_ms);
        let mut all: Vec<(u64, u64)> = self
            .samples
            .drain(..)
            .chain(other.samples.iter().copied())
            .collect();
        all.sort();
        let mut merged = Series::default();
        for (t, ms) in all {
            merged.add(t, ms);
        }
        self.samples = merged.samples;
    }
}

#[derive(Default)]
pub struct Latency {
    /// `latency-tracking`.
    pub tracking: bool,
    /// Commands taking at least this many ticks are latency events (u64::MAX: monitor off).
    pub monitor_ticks: u64,
    hists: HashMap<usize, (Lookup, Box<Histogram<u64>>), ahash::RandomState>,
    events: BTreeMap<&'static str, Series>,
}

impl Latency {
    pub fn new() -> Latency {
        Latency {
            tracking: true,
            monitor_ticks: u64::MAX,
            ..Default::default()
        }
    }

    /// Records a command's execution time.
    pub fn record(&mut self, l: Lookup, ns: u64) {
        let (_, h) = self
            .hists
            .entry(l.spec as *const _ as usize)
            .or_insert_with(|| (l, Box::new(histogram())));
        let _ = h.record(ns.clamp(HIST_MIN_NS, HIST_MAX_NS));
    }

    /// Adds a latency event sample.
    pub fn event(&mut self, name: &'static str, time_s: u64, ms: u64) {
        self.events.entry(name).or_default().add(time_s, ms);
    }

    /// (full command name, histogram) of every command timed so far.
    pub fn histograms(&self) -> Vec<(String, Histogram<u64>)> {
        self.hists
            .values()
            .map(|(l, h)| (l.full_name(), (**h).clone()))
            .collect()
    }

    pub fn events(&self) -> Vec<(String, Series)> {
        self.events
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect()
    }

    /// LATENCY RESET: forgets these events (all when `names` is empty); how many existed.
    pub fn reset_events(&mut self, names: &[Vec<u8>]) -> usize {
        if names.is_empty() {
            let n = self.events.len();
            self.events.clear();
            return n;
        }
        let before = self.events.len();
        self.events
            .retain(|k, _| !names.iter().any(|n| n.eq_ignore_ascii_case(k.as_bytes())));
        before - self.events.len()
    }

    /// CONFIG RESETSTAT forgets the histograms.
    pub fn reset_histograms(&mut self) {
        self.hists.clear();
    }
}

/// INFO latencystats' value for one command: `p50=…,p99=…,p99.9=…` in microseconds.
pub fn percentiles(h: &Histogram<u64>, ps: &[f64]) -> String {
    ps.iter()
        .map(|&p| {
            let v = h.value_at_quantile(p / 100.0) as f64 / 1000.0;
            format!("p{}={v:.3}", fmt_percentile(p))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A percentile as Redis names it: `50`, `99.9`.
fn fmt_percentile(p: f64) -> String {
    let s = format!("{p:.6}");
    let s = s.trim_end_matches('0');
    s.trim_end_matches('.').to_string()
}

/// LATENCY HISTOGRAM's entry for one command: calls, and the cumulative count at each
/// power-of-two bucket (µs) where it grew.
pub fn cdf_reply(h: &Histogram<u64>, out: &mut Reply) {
    out.map(2);
    out.bulk(b"calls");
    out.int(h.len() as i64);
    out.bulk(b"histogram_usec");
    let mut points = Vec::new();
    let mut cumulative = 0u64;
    let mut previous = 0u64;
    for v in h.iter_log(1024, 2.0) {
        cumulative += v.count_since_last_iteration();
        if cumulative > previous {
            let micros = h.highest_equivalent(v.value_iterated_to()) / 1000;
            points.push((micros, cumulative));
        }
        previous = cumulative;
    }
    out.map(points.len());
    for (us, n) in points {
        out.int(us as i64);
        out.int(n as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_names_read_as_redis() {
        assert_eq!(fmt_percentile(50.0), "50");
        assert_eq!(fmt_percentile(99.9), "99.9");
        assert_eq!(fmt_percentile(99.99), "99.99");
    }

    #[test]
    fn series_keep_one_sample_per_second_and_the_worst() {
        let mut s = Series::default();
        s.add(10, 5);
        s.add(10, 7);
        s.add(11, 3);
        assert_eq!(s.samples, VecDeque::from(vec![(10, 7), (11, 3)]));
        assert_eq!(s.max_ms, 7);
        for t in 0..200 {
            s.add(100 + t, 1);
        }
        assert_eq!(s.samples.len(), SERIES_LEN);
        let mut o = Series::default();
        o.add(11, 9);
        let mut m = Series::default();
        m.add(10, 7);
        m.add(11, 3);
        m.merge(&o);
        assert_eq!(m.samples, VecDeque::from(vec![(10, 7), (11, 9)]));
        assert_eq!(m.max_ms, 9);
    }

    #[test]
    fn histogram_reports_percentiles_in_microseconds() {
        let mut h = histogram();
        for _ in 0..99 {
            h.record(1_000).unwrap();
        }
        h.record(100_000).unwrap();
        let p = percentiles(&h, &[50.0, 99.0, 99.9]);
        assert!(p.starts_with("p50=1.00"), "{p}");
        assert!(p.contains(",p99.9=100."), "{p}");
    }
}
