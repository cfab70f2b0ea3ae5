//! Summarise the latest criterion run as markdown: every benchmark's
//! median, its ratio to the floor and to governor's default keyed limiter
//! on the same keys, working set and mode, then the performance bars.
//!
//! `cargo run -p ratecard-benches --bin summary [CRITERION_DIR]`
//!
//! The directory defaults to `$CRITERION_HOME`, else
//! `$CARGO_TARGET_DIR/criterion`, else the workspace's `target/criterion`.
//! It reads each `<benchmark>/new/benchmark.json` and `estimates.json`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Group order in the table.
const GROUPS: [&str; 6] = ["decision", "keyed", "floor", "peers", "ffi", "contended"];

/// One benchmark's median.
#[derive(Clone, Debug)]
struct Bench {
    group: String,
    function: String,
    value: Option<String>,
    median_ns: f64,
}

/// The parts of a `who/key/mode` function id.
struct Parts<'a> {
    who: &'a str,
    key: &'a str,
    mode: &'a str,
}

impl Bench {
    fn parts(&self) -> Option<Parts<'_>> {
        let mut it = self.function.split('/');
        let (who, key, mode) = (it.next()?, it.next()?, it.next()?);
        (it.next().is_none() && self.value.is_some()).then_some(Parts { who, key, mode })
    }

    fn id(&self) -> String {
        let base = format!("{}/{}", self.group, self.function);
        match &self.value {
            Some(v) => format!("{base}/{v}"),
            None => base,
        }
    }
}

fn criterion_dir() -> PathBuf {
    if let Some(arg) = std::env::args_os().nth(1) {
        return PathBuf::from(arg);
    }
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Path::new(&target).join("criterion");
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

/// Every `new/` directory under `dir` holding both JSON files.
fn collect(dir: &Path, out: &mut Vec<Bench>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if let Some(b) = read_bench(&path) {
                out.push(b);
            }
        } else {
            collect(&path, out);
        }
    }
}

fn read_bench(new: &Path) -> Option<Bench> {
    let meta = read_json(&new.join("benchmark.json"))?;
    let est = read_json(&new.join("estimates.json"))?;
    Some(Bench {
        group: meta.get("group_id")?.as_str()?.to_owned(),
        function: meta.get("function_id")?.as_str()?.to_owned(),
        value: meta
            .get("value_str")
            .and_then(Value::as_str)
            .map(str::to_owned),
        median_ns: est.get("median")?.get("point_estimate")?.as_f64()?,
    })
}

/// Medians by `who/key/mode` and value, over every group.
struct Index<'a>(BTreeMap<(&'a str, &'a str, &'a str, &'a str), f64>);

impl<'a> Index<'a> {
    fn new(benches: &'a [Bench]) -> Index<'a> {
        let mut map = BTreeMap::new();
        for b in benches {
            if let (Some(p), Some(v)) = (b.parts(), b.value.as_deref()) {
                map.insert((p.who, p.key, p.mode, v), b.median_ns);
            }
        }
        Index(map)
    }

    fn get(&self, who: &str, key: &str, mode: &str, value: &str) -> Option<f64> {
        self.0.get(&(who, key, mode, value)).copied()
    }
}

fn median(benches: &[Bench], id: &str) -> Option<f64> {
    benches.iter().find(|b| b.id() == id).map(|b| b.median_ns)
}

fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"))
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cpus} CPUs (`nproc`), {model}")
}

fn main() {
    let dir = criterion_dir();
    let mut benches = Vec::new();
    collect(&dir, &mut benches);
    if benches.is_empty() {
        eprintln!(
            "no criterion results under {}: run `cargo bench -p ratecard-benches` first",
            dir.display()
        );
        std::process::exit(1);
    }
    let rank = |g: &str| GROUPS.iter().position(|x| *x == g).unwrap_or(GROUPS.len());
    benches.sort_by(|a, b| {
        let num = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u64>().ok());
        (rank(&a.group), &a.group)
            .cmp(&(rank(&b.group), &b.group))
            .then_with(|| {
                let (pa, pb) = (a.parts(), b.parts());
                let k = |p: &Option<Parts<'_>>| {
                    p.as_ref().map(|p| (p.key.to_owned(), p.who.to_owned()))
                };
                k(&pa).cmp(&k(&pb))
            })
            .then_with(|| num(&a.value).cmp(&num(&b.value)))
            .then_with(|| a.function.cmp(&b.function))
    });
    let index = Index::new(&benches);

    println!("Machine: {}.", machine());
    println!();
    println!("| benchmark | working set | mode | median ns | ÷ floor | ÷ governor keyed |");
    println!("| --- | ---: | --- | ---: | ---: | ---: |");
    for b in &benches {
        let (name, ws, mode, floor, gov) = match (b.parts(), b.value.as_deref()) {
            (Some(p), Some(v)) => (
                format!("{}/{}/{}", b.group, p.who, p.key),
                v.to_owned(),
                p.mode.to_owned(),
                index.get("floor", p.key, p.mode, v),
                index.get("governor-keyed", p.key, p.mode, v),
            ),
            _ => (b.id(), "—".to_owned(), "—".to_owned(), None, None),
        };
        println!(
            "| {name} | {ws} | {mode} | {:.1} | {} | {} |",
            b.median_ns,
            ratio(floor.map(|f| b.median_ns / f)),
            ratio(gov.map(|g| b.median_ns / g)),
        );
    }
    println!();
    bars(&benches, &index);
}

/// The design's performance bars, met or missed.
fn bars(benches: &[Bench], index: &Index<'_>) {
    let mut rows: Vec<(String, String, Option<bool>)> = Vec::new();
    let mut at_most = |bar: &str, id: &str, limit: f64| {
        let m = median(benches, id);
        rows.push((
            bar.to_owned(),
            m.map_or_else(|| "not run".to_owned(), |m| format!("{m:.1} ns")),
            m.map(|m| m <= limit),
        ));
    };
    at_most(
        "Frontend decision, hot key ≤ 25 ns",
        "decision/check/frontend/allowed",
        25.0,
    );
    at_most(
        "PATCH /v1/users/{id}, hot key ≤ 45 ns",
        "decision/check/patch_user/allowed",
        45.0,
    );

    // Keyed check on 1 and 10 000 keys, over every key kind and mode: against
    // the floor and against governor's best configuration.
    let keyed: Vec<&Bench> = benches
        .iter()
        .filter(|b| b.group == "keyed" && matches!(b.value.as_deref(), Some("1" | "10000")))
        .collect();
    let worst = |who: &str| -> Option<(f64, String)> {
        keyed
            .iter()
            .filter_map(|b| {
                let p = b.parts()?;
                let v = b.value.as_deref()?;
                let g = index.get(who, p.key, p.mode, v)?;
                Some((b.median_ns / g, format!("{} {} {}", p.key, v, p.mode)))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    let mut vs = |bar: &str, who: &str, limit: f64| {
        let w = worst(who);
        rows.push((
            bar.to_owned(),
            w.as_ref().map_or_else(
                || "not run".to_owned(),
                |(r, at)| format!("worst ×{r:.2} of {who} ({at})"),
            ),
            w.map(|(r, _)| r <= limit),
        ));
    };
    vs(
        "keyed check, 1 and 10 000 keys: ≤ 1.3× the floor",
        "floor",
        1.3,
    );
    vs(
        "keyed check, 1 and 10 000 keys: faster than governor's best configuration",
        "governor-best",
        0.999,
    );

    for key in ["u64", "ipv6", "secret48"] {
        let r = index.get("ratecard", key, "latency", "1000000");
        let f = index.get("floor", key, "latency", "1000000");
        let pair = r.zip(f);
        rows.push((
            format!("1M keys, latency, {key}: ≤ 1.1× the floor"),
            pair.map_or_else(
                || "not run".to_owned(),
                |(r, f)| format!("{r:.1} ns vs floor {f:.1} ns: ×{:.2}", r / f),
            ),
            pair.map(|(r, f)| r <= 1.1 * f),
        ));
    }

    // Two threads on one key: no slower than governor (either configuration).
    let two = |who: &str| median(benches, &format!("contended/{who}/one-key/2-threads/1"));
    for who in ["governor-keyed", "governor-best"] {
        let pair = two("ratecard").zip(two(who));
        rows.push((
            format!("two threads, one key: no slower than {who}"),
            pair.map_or_else(
                || "not run".to_owned(),
                |(r, g)| format!("ratecard {r:.1} ns, {who} {g:.1} ns: ×{:.2}", r / g),
            ),
            pair.map(|(r, g)| r <= g),
        ));
    }

    for call in ["check", "check_key"] {
        let rust = median(benches, &format!("ffi/{call}/rust"));
        let c = median(benches, &format!("ffi/{call}/c"));
        let pair = rust.zip(c);
        rows.push((
            format!("C ABI `ratecard_{call}` within 2 ns of the Rust call"),
            pair.map_or_else(
                || "not run".to_owned(),
                |(r, c)| format!("C {c:.1} ns, Rust {r:.1} ns: {:+.1} ns", c - r),
            ),
            pair.map(|(r, c)| c - r <= 2.0),
        ));
    }

    println!("| bar | measured | met |");
    println!("| --- | --- | --- |");
    for (bar, measured, met) in rows {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        println!("| {bar} | {measured} | {met} |");
    }
}
