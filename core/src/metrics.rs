//! Counters in Prometheus' text exposition format (version 0.0.4), written
//! into a caller buffer: the one writer every host (nginx, Go, C, the
//! Envoy service) serves.
//!
//! Families (every sample carries the `zone` label, the host's name for
//! the table):
//! - `ratecard_decisions_total{zone, rule, outcome}`: decisions by the rule
//!   that bound them; `outcome` is `allowed`, `limited`, `dry_run_limited`
//!   or `exempt`; and without `rule`, `unmatched` and `error`;
//! - `ratecard_inserts_total`, `ratecard_evictions_total` (a live key
//!   replaced), `ratecard_evictions_in_debt_total` (replaced while still in
//!   debt: each may let that key exceed its limit once),
//!   `ratecard_table_full_total` (inserts the policy refused or admitted
//!   untracked because every candidate was in debt);
//! - `ratecard_table_slots` and `ratecard_table_occupied_slots` (gauges);
//! - `ratecard_remote_calls_total`, `ratecard_remote_errors_total`,
//!   `ratecard_remote_fallbacks_total`, `ratecard_remote_cached_denials_total`
//!   (the Redis mode; zero otherwise).
//!
//! Labels are zones, rules and outcomes, never subjects: the number of
//! series is bounded by the rule table, whatever the traffic. Counters only
//! grow while the table lives (they restart with a new table) and are exact
//! at quiescence; see [`crate::Stats`].

use core::fmt::{self, Write};

use crate::decision::RuleId;
use crate::limiter::Limiter;
use crate::rule::MAX_RULES;
use crate::stats::{RuleStats, Stats};

/// The most zones one call writes.
pub const MAX_ZONES: usize = 32;

/// Why the metrics were not written.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MetricsError {
    /// The buffer is too short: this many bytes are needed (untouched).
    BufferTooShort(usize),
    /// More than [`MAX_ZONES`] zones.
    TooManyZones,
}

/// Write the metrics of `zones` (a name and a limiter each) into `out`;
/// the number of bytes written.
pub fn write(zones: &[(&str, &Limiter<'_>)], out: &mut [u8]) -> Result<usize, MetricsError> {
    if zones.len() > MAX_ZONES {
        return Err(MetricsError::TooManyZones);
    }
    // One snapshot per zone (occupancy is a scan), shared by both passes.
    let mut stats = [Stats::default(); MAX_ZONES];
    for (s, (_, l)) in stats.iter_mut().zip(zones) {
        *s = l.stats();
    }
    let stats = stats.get(..zones.len()).unwrap_or(&[]);
    let render = |w: &mut dyn Write| render(zones, stats, w);
    let mut count = Counter(0);
    let _ = render(&mut count);
    if count.0 > out.len() {
        return Err(MetricsError::BufferTooShort(count.0));
    }
    let mut w = Slice { out, len: 0 };
    render(&mut w).map_err(|_| MetricsError::BufferTooShort(count.0))?;
    Ok(w.len)
}

/// A global counter or gauge: its name, type, help and value.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&Stats) -> u64,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "ratecard_inserts_total",
        kind: "counter",
        help: "Keys inserted into the table.",
        value: |s| s.inserts,
    },
    Family {
        name: "ratecard_evictions_total",
        kind: "counter",
        help: "Inserts that replaced a live key, fully replenished or not.",
        value: |s| s.evicted,
    },
    Family {
        name: "ratecard_evictions_in_debt_total",
        kind: "counter",
        help: "Inserts that replaced a key still in debt (each may let that key exceed its limit once).",
        value: |s| s.evicted_in_debt,
    },
    Family {
        name: "ratecard_table_full_total",
        kind: "counter",
        help: "Inserts that found every candidate slot in debt and were refused or admitted untracked by the policy.",
        value: |s| s.full,
    },
    Family {
        name: "ratecard_table_slots",
        kind: "gauge",
        help: "Slots in the table.",
        value: |s| s.capacity,
    },
    Family {
        name: "ratecard_table_occupied_slots",
        kind: "gauge",
        help: "Slots holding a key (a scan at scrape time).",
        value: |s| s.occupancy,
    },
    Family {
        name: "ratecard_remote_calls_total",
        kind: "counter",
        help: "Round trips to the remote store (Redis) that got a reply.",
        value: |s| s.remote_calls,
    },
    Family {
        name: "ratecard_remote_errors_total",
        kind: "counter",
        help: "Round trips to the remote store that failed (timeout, connection, bad reply).",
        value: |s| s.remote_errors,
    },
    Family {
        name: "ratecard_remote_fallbacks_total",
        kind: "counter",
        help: "Decisions the host's policy answered because the remote store could not.",
        value: |s| s.remote_fallbacks,
    },
    Family {
        name: "ratecard_remote_cached_denials_total",
        kind: "counter",
        help: "Denials answered from the cache of remote denials, with no round trip.",
        value: |s| s.remote_cached,
    },
];

/// A per-rule outcome: its label value and its counter.
type Outcome = (&'static str, fn(&RuleStats) -> u64);

const OUTCOMES: [Outcome; 4] = [
    ("allowed", |r| r.allowed),
    ("limited", |r| r.limited),
    ("dry_run_limited", |r| r.dry_run_limited),
    ("exempt", |r| r.exempt),
];

fn render(zones: &[(&str, &Limiter<'_>)], stats: &[Stats], w: &mut dyn Write) -> fmt::Result {
    w.write_str(
        "# HELP ratecard_decisions_total Decisions by the rule that bound them and their outcome; \
         monotonic while the table lives, exact at quiescence.\n\
         # TYPE ratecard_decisions_total counter\n",
    )?;
    for ((zone, l), s) in zones.iter().zip(stats) {
        for (i, rule) in l.rules().rules().iter().enumerate().take(MAX_RULES) {
            let Some(rs) = l.rule_stats(RuleId(i as u8)) else {
                continue;
            };
            for (outcome, value) in OUTCOMES {
                // An unlimited rule only exempts; a limited one never does.
                if (outcome == "exempt") != rule.quota.is_unlimited() {
                    continue;
                }
                w.write_str("ratecard_decisions_total{zone=\"")?;
                escaped(w, zone)?;
                w.write_str("\",rule=\"")?;
                escaped(w, rule.name)?;
                writeln!(w, "\",outcome=\"{outcome}\"}} {}", value(&rs))?;
            }
        }
        for (outcome, value) in [("unmatched", s.unmatched), ("error", s.errors)] {
            w.write_str("ratecard_decisions_total{zone=\"")?;
            escaped(w, zone)?;
            writeln!(w, "\",outcome=\"{outcome}\"}} {value}")?;
        }
    }
    for f in FAMILIES {
        write!(
            w,
            "# HELP {} {}\n# TYPE {} {}\n",
            f.name, f.help, f.name, f.kind
        )?;
        for ((zone, _), s) in zones.iter().zip(stats) {
            write!(w, "{}{{zone=\"", f.name)?;
            escaped(w, zone)?;
            writeln!(w, "\"}} {}", (f.value)(s))?;
        }
    }
    Ok(())
}

/// A label value as the format wants it: backslash, double quote and line
/// feed escaped.
fn escaped(w: &mut dyn Write, s: &str) -> fmt::Result {
    let mut rest = s;
    while let Some(i) = rest.find(['\\', '"', '\n']) {
        let (head, tail) = rest.split_at(i);
        w.write_str(head)?;
        let mut chars = tail.chars();
        w.write_str(match chars.next() {
            Some('\\') => "\\\\",
            Some('"') => "\\\"",
            _ => "\\n",
        })?;
        rest = chars.as_str();
    }
    w.write_str(rest)
}

struct Counter(usize);

impl Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.saturating_add(s.len());
        Ok(())
    }
}

struct Slice<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Write for Slice<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.out.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::{Api, Config, Nanos, Request, Seed, CLERK};

    fn text(zones: &[(&str, &Limiter<'_>)]) -> std::string::String {
        let mut buf = std::vec![0u8; 64 * 1024];
        let n = write(zones, &mut buf).unwrap();
        std::string::String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn decisions_are_counted_by_rule_and_outcome_in_every_zone() {
        let l = Limiter::new(
            &Config {
                capacity: 64,
                ..Config::DEFAULT
            },
            CLERK,
            Seed::from_bytes([1; 16]),
        )
        .unwrap();
        let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([10, 0, 0, 1]);
        for _ in 0..7 {
            l.check(&r, Nanos(1)).unwrap();
        }
        let t = text(&[("a\"b", &l), ("second", &l)]);
        assert!(t.contains("ratecard_decisions_total{zone=\"a\\\"b\",rule=\"fapi.sign_ins.create\",outcome=\"allowed\"} 5\n"), "{t}");
        assert!(t.contains("ratecard_decisions_total{zone=\"second\",rule=\"fapi.sign_ins.create\",outcome=\"limited\"} 2\n"));
        assert!(t.contains(
            "ratecard_decisions_total{zone=\"second\",rule=\"bapi.jwks\",outcome=\"exempt\"} 0\n"
        ));
        assert!(!t.contains("rule=\"bapi.jwks\",outcome=\"allowed\""));
        assert!(t.contains("ratecard_table_slots{zone=\"second\"} 64\n"));
        assert!(t.contains("ratecard_inserts_total{zone=\"second\"} 1\n"));
        // One HELP and TYPE per family, before its samples.
        assert_eq!(
            t.matches("# TYPE ratecard_decisions_total counter").count(),
            1
        );
        assert_eq!(t.matches("# TYPE ratecard_table_slots gauge").count(), 1);
        assert!(t.ends_with('\n'));
    }

    #[test]
    fn a_short_buffer_reports_the_length_needed_and_stays_untouched() {
        let l = Limiter::new(
            &Config {
                capacity: 64,
                ..Config::DEFAULT
            },
            CLERK,
            Seed::from_bytes([1; 16]),
        )
        .unwrap();
        let mut small = [9u8; 100];
        let Err(MetricsError::BufferTooShort(need)) = write(&[("z", &l)], &mut small) else {
            panic!("should not fit");
        };
        assert!(small.iter().all(|&b| b == 9));
        let mut buf = std::vec![0u8; need];
        assert_eq!(write(&[("z", &l)], &mut buf), Ok(need));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = std::string::String::new();
        escaped(&mut s, "a\\b\"c\nd").unwrap();
        assert_eq!(s, "a\\\\b\\\"c\\nd");
    }
}
