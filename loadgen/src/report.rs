//! What a run measured: per-command counts and HDR latency histograms, merged over threads,
//! written as a text table and as JSON (by hand: the shape is small and fixed).

use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::time::Duration;

/// The largest latency a histogram records, in microseconds (longer ones are clamped to it).
const LATENCY_MAX_US: u64 = 60_000_000;
/// How many mismatches a run keeps the text of.
pub const MISMATCHES_KEPT: usize = 20;
/// The percentiles reported, with their names.
const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
];

/// Counts and latencies of one command.
#[derive(Clone)]
pub struct CommandStats {
    pub name: String,
    /// Requests answered after the warm-up (errors and mismatches included).
    pub count: u64,
    /// Error replies (during the warm-up too).
    pub errors: u64,
    /// Replies that were not what `--verify` expected (error replies not included).
    pub mismatches: u64,
    /// Latency in microseconds, from the pipeline's write to this reply.
    pub latency_us: Histogram<u64>,
}

impl CommandStats {
    pub fn new(name: String) -> CommandStats {
        CommandStats {
            name,
            count: 0,
            errors: 0,
            mismatches: 0,
            latency_us: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                .expect("valid histogram bounds"),
        }
    }

    pub fn record(&mut self, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        self.latency_us.saturating_record(us);
        self.count += 1;
    }

    fn merge(&mut self, other: &CommandStats) {
        self.count += other.count;
        self.errors += other.errors;
        self.mismatches += other.mismatches;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
    }
}

/// Everything one thread (or, merged, the whole run) measured.
#[derive(Clone)]
pub struct Stats {
    pub commands: Vec<CommandStats>,
    /// `-MOVED` and `-ASK` redirections followed.
    pub moved: u64,
    pub ask: u64,
    /// `-TRYAGAIN` replies retried.
    pub tryagain: u64,
    /// Connections that failed (each ends its client).
    pub connection_errors: Vec<String>,
    /// The first mismatches and errors, described.
    pub problems: Vec<String>,
}

impl Stats {
    pub fn new(names: &[String]) -> Stats {
        Stats {
            commands: names.iter().cloned().map(CommandStats::new).collect(),
            moved: 0,
            ask: 0,
            tryagain: 0,
            connection_errors: Vec::new(),
            problems: Vec::new(),
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.commands.iter_mut().zip(&other.commands) {
            mine.merge(theirs);
        }
        self.moved += other.moved;
        self.ask += other.ask;
        self.tryagain += other.tryagain;
        self.connection_errors
            .extend(other.connection_errors.iter().cloned());
        for p in &other.problems {
            if self.problems.len() < MISMATCHES_KEPT {
                self.problems.push(p.clone());
            }
        }
    }

    /// Notes a problem, keeping only the first few.
    pub fn problem(&mut self, text: String) {
        if self.problems.len() < MISMATCHES_KEPT {
            self.problems.push(text);
        }
    }

    /// All commands together.
    pub fn total(&self) -> CommandStats {
        let mut total = CommandStats::new("total".into());
        for c in &self.commands {
            total.merge(c);
        }
        total
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The text table: one row per command and a total.
pub fn text(stats: &Stats, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>10} {:>12} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "command",
        "requests",
        "req/s",
        "errors",
        "mismatch",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "p99.99 ms",
        "max ms"
    );
    let total = stats.total();
    for c in stats.commands.iter().chain(std::iter::once(&total)) {
        let h = &c.latency_us;
        let _ = write!(
            out,
            "{:<10} {:>10} {:>12.0} {:>7} {:>8}",
            c.name,
            c.count,
            c.count as f64 / secs,
            c.errors,
            c.mismatches
        );
        for (_, p) in PERCENTILES {
            let _ = write!(out, " {:>9.3}", ms(h.value_at_percentile(p)));
        }
        let _ = writeln!(out, " {:>9.3}", ms(h.max()));
    }
    if stats.moved + stats.ask + stats.tryagain > 0 {
        let _ = writeln!(
            out,
            "redirections followed: {} MOVED, {} ASK, {} TRYAGAIN",
            stats.moved, stats.ask, stats.tryagain
        );
    }
    out
}

/// The JSON report: the run's settings (already JSON) and every command's figures.
pub fn json(stats: &Stats, elapsed: Duration, settings_json: &str) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let entry = |c: &CommandStats| {
        let h = &c.latency_us;
        let mut s = format!(
            "{{\"requests\": {}, \"requests_per_sec\": {:.1}, \"errors\": {}, \"mismatches\": {}, \"latency_ms\": {{",
            c.count,
            c.count as f64 / secs,
            c.errors,
            c.mismatches
        );
        for (name, p) in PERCENTILES {
            let _ = write!(s, "\"{name}\": {:.3}, ", ms(h.value_at_percentile(p)));
        }
        let _ = write!(
            s,
            "\"max\": {:.3}, \"mean\": {:.3}}}}}",
            ms(h.max()),
            h.mean() / 1000.0
        );
        s
    };
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"settings\": {settings_json},");
    let _ = writeln!(out, "  \"duration_sec\": {secs:.3},");
    let _ = writeln!(out, "  \"total\": {},", entry(&stats.total()));
    let _ = writeln!(out, "  \"commands\": {{");
    for (i, c) in stats.commands.iter().enumerate() {
        let comma = if i + 1 < stats.commands.len() {
            ","
        } else {
            ""
        };
        let _ = writeln!(out, "    {}: {}{comma}", json_string(&c.name), entry(c));
    }
    let _ = writeln!(out, "  }},");
    let _ = writeln!(
        out,
        "  \"redirections\": {{\"moved\": {}, \"ask\": {}, \"tryagain\": {}}},",
        stats.moved, stats.ask, stats.tryagain
    );
    let list = |items: &[String]| {
        let quoted: Vec<String> = items.iter().map(|s| json_string(s)).collect();
        format!("[{}]", quoted.join(", "))
    };
    let _ = writeln!(
        out,
        "  \"connection_errors\": {},",
        list(&stats.connection_errors)
    );
    let _ = writeln!(out, "  \"problems\": {}", list(&stats.problems));
    out.push_str("}\n");
    out
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_json() {
        let mut stats = Stats::new(&["get".into(), "set".into()]);
        for us in 1..=1000 {
            stats.commands[0].record(Duration::from_micros(us));
        }
        stats.commands[1].errors = 1;
        stats.problem("a \"quoted\"\nline".into());
        let total = stats.total();
        assert_eq!(total.count, 1000);
        assert!((495..=505).contains(&total.latency_us.value_at_percentile(50.0)));
        let j = json(&stats, Duration::from_secs(1), "{}");
        assert!(j.contains("\"get\": {\"requests\": 1000"));
        assert!(j.contains("a \\\"quoted\\\"\\u000aline"));
        let t = text(&stats, Duration::from_secs(1));
        assert_eq!(t.lines().count(), 4);
    }
}
