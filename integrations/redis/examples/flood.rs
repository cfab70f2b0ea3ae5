//! A flood from one limited client: one client IP sending Frontend sign-ins
//! (`fapi.sign_ins.create`, 5 per 10 s) back to back after Redis has
//! limited it, through [`RedisBackend`] with its cache of denials (the
//! default) and without it (every denial a round trip), against redis-cell
//! 0.2.2's `CL.THROTTLE` on one limited key through `redis-benchmark` (one
//! connection, and 50 connections pipelined 16): decisions per second, and
//! how many of them reached Redis (`INFO commandstats`).
//!
//! ```sh
//! # its own redis-server, redis-cell loaded (bench.sh builds the module):
//! cargo run --release -p ratecard-redis --example flood -- --cell target/bench-redis/libredis_cell.so
//! # a running server on 127.0.0.1 (bench.sh passes its own):
//! cargo run --release -p ratecard-redis --example flood -- --port 6379 --rounds 3
//! # ratecard's rows only, quickly (no redis-cell):
//! cargo run --release -p ratecard-redis --example flood -- --rounds 1 --seconds 1
//! ```
//!
//! Without `--port` it starts its own `redis-server` on 127.0.0.1 (a free
//! port, no persistence) and stops it at the end. Every flood is bounded by
//! `--calls` and `--seconds`, every `redis-benchmark` by its request count
//! and a 120 s timeout. Cases alternate within each round; figures are
//! medians over `--rounds`. The client runs on one thread.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Redis;
use ratecard::{Api, Config, Limiter, Request, Seed, Stats, CLERK};
use ratecard_redis::{Options, RedisBackend};

/// The sign-in's interval: 5 per 10 s is GCRA with `T` = 2 s.
const INTERVAL: Duration = Duration::from_secs(2);
/// redis-cell's key, and its `CL.THROTTLE key max_burst count period`
/// (max_burst = burst - 1) for the same limit.
const CELL_KEY: &str = "rc:{flood}S";
const CELL_LIMIT: [&str; 4] = ["4", "5", "10", "1"];

struct Args {
    rounds: usize,
    seconds: f64,
    calls: u64,
    tasks: usize,
    n1: u64,
    np: u64,
    port: Option<u16>,
    cell: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        rounds: 3,
        seconds: 3.0,
        calls: 20_000_000,
        tasks: 50,
        n1: 50_000,
        np: 500_000,
        port: None,
        cell: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        let ok = match flag.as_str() {
            "--rounds" => value.parse().map(|v| a.rounds = v).is_ok(),
            "--seconds" => value.parse().map(|v| a.seconds = v).is_ok(),
            "--calls" => value.parse().map(|v| a.calls = v).is_ok(),
            "--tasks" => value.parse().map(|v| a.tasks = v).is_ok(),
            "--n1" => value.parse().map(|v| a.n1 = v).is_ok(),
            "--np" => value.parse().map(|v| a.np = v).is_ok(),
            "--port" => value.parse().map(|v| a.port = Some(v)).is_ok(),
            // Absolute: the server runs in a scratch directory.
            "--cell" => std::fs::canonicalize(&value)
                .map(|p| a.cell = Some(p))
                .is_ok(),
            _ => false,
        };
        let sane = a.rounds >= 1
            && (0.1..=60.0).contains(&a.seconds)
            && a.calls >= 1
            && (1..=1024).contains(&a.tasks);
        if !ok || !sane {
            eprintln!(
                "usage: flood [--rounds R] [--seconds S (0.1..60)] [--calls N] [--tasks T]\n\
                 \x20            [--n1 N] [--np N] [--port P | --cell libredis_cell.so]"
            );
            std::process::exit(2);
        }
    }
    a
}

/// `redis-cli` on 127.0.0.1:`port`: its standard output, trimmed.
fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run redis-cli (apt-get install redis-tools)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Calls of `command` since the last `CONFIG RESETSTAT`.
fn calls_of(port: u16, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:calls=");
    cli(port, &["INFO", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A fresh start for a case: no keys, no command counts.
fn reset(port: u16) {
    assert_eq!(cli(port, &["FLUSHALL"]), "OK");
    assert_eq!(cli(port, &["CONFIG", "RESETSTAT"]), "OK");
}

/// What one case came to.
#[derive(Clone, Copy)]
struct Run {
    rate: f64,
    decisions: u64,
    reached: u64,
    /// Allowed during the flood, where the client counts them.
    allowed: Option<u64>,
}

/// redis-cell's `CL.THROTTLE` on one key it has just limited, through
/// `redis-benchmark` with `opts`: every call is a round trip.
fn cell_flood(port: u16, opts: &[&str], calls: u64) -> Run {
    reset(port);
    let mut limit = vec!["CL.THROTTLE", CELL_KEY];
    limit.extend(CELL_LIMIT);
    for _ in 0..5 {
        cli(port, &limit);
    }
    // The reply's first element: 1 when limited.
    let first = cli(port, &limit);
    assert_eq!(first.lines().next(), Some("1"), "redis-cell limits the key");
    assert_eq!(cli(port, &["CONFIG", "RESETSTAT"]), "OK");
    let out = Command::new("timeout")
        .args(["120", "redis-benchmark", "-h", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-n", &calls.to_string(), "--csv"])
        .args(opts)
        .args(&limit)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run redis-benchmark (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps","avg_latency_ms",...: the last row is the command's.
    let rate = text
        .lines()
        .rfind(|l| !l.starts_with("\"test\"") && !l.is_empty())
        .and_then(|row| row.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no result from redis-benchmark: {text}"));
    Run {
        rate,
        decisions: calls,
        reached: calls_of(port, "cl.throttle"),
        allowed: None,
    }
}

/// The limited client's request: one IP, a sign-in.
fn sign_in() -> Request<'static> {
    Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([203, 0, 113, 7])
}

/// Back-to-back decisions from one task until `calls` or `deadline`;
/// (decisions, allowed).
async fn burst(backend: &RedisBackend, calls: u64, deadline: Instant) -> (u64, u64) {
    let (mut done, mut allowed) = (0u64, 0u64);
    while done < calls {
        let d = backend.check(&sign_in()).await.expect("a decision");
        allowed += u64::from(d.allowed());
        done += 1;
        // The clock every 16 calls: a cached answer costs not much more.
        if done % 16 == 0 && Instant::now() >= deadline {
            break;
        }
    }
    (done, allowed)
}

/// ratecard's flood through a fresh backend on Redis at `port`, with
/// `tasks` tasks in flight on this thread.
fn our_flood(a: &Args, port: u16, cache_denials: bool, tasks: usize) -> Run {
    reset(port);
    let config = Config {
        capacity: 1 << 16,
        ..Config::DEFAULT
    };
    let limiter = Limiter::new(&config, CLERK, Seed::from_bytes(*b"flood seed 01234")).unwrap();
    let backend = Arc::new(
        RedisBackend::new(
            Arc::new(limiter),
            Options {
                timeout: Duration::from_secs(1),
                connections: tasks,
                cache_denials,
                ..Options::new(format!("127.0.0.1:{port}"))
            },
        )
        .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Spend the burst until Redis limits the client (the 6th sign-in).
        let mut limited = false;
        for _ in 0..100 {
            if backend
                .check(&sign_in())
                .await
                .expect("a decision")
                .is_limited()
            {
                limited = true;
                break;
            }
        }
        assert!(limited, "Redis limits the client within 100 sign-ins");
        assert_eq!(cli(port, &["CONFIG", "RESETSTAT"]), "OK");
        let before = backend.limiter().stats();
        let budget = Duration::from_secs_f64(a.seconds);
        let start = Instant::now();
        let deadline = start + budget;
        let (decisions, allowed) = if tasks == 1 {
            burst(&backend, a.calls, deadline).await
        } else {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..tasks {
                let b = Arc::clone(&backend);
                let share = a.calls.div_ceil(tasks as u64);
                set.spawn(async move { burst(&b, share, deadline).await });
            }
            let mut sum = (0, 0);
            while let Some(r) = set.join_next().await {
                let (d, k) = r.expect("a flood task");
                sum = (sum.0 + d, sum.1 + k);
            }
            sum
        };
        let elapsed = start.elapsed();
        let s = delta(&backend.limiter().stats(), &before);
        let reached = calls_of(port, "evalsha") + calls_of(port, "eval");
        assert_eq!(s.remote_errors, 0, "every call answered");
        assert_eq!(
            s.remote_calls, reached,
            "the limiter counts every round trip"
        );
        assert_eq!(
            s.allowed + s.limited,
            decisions,
            "every decision counted once"
        );
        // Never looser: once limited, one sign-in per interval at most.
        let bound = 1 + (elapsed.as_nanos() / INTERVAL.as_nanos()) as u64;
        assert!(
            allowed <= bound,
            "{allowed} sign-ins allowed in {elapsed:?}, above the GCRA bound {bound}"
        );
        if cache_denials {
            assert!(s.remote_cached > 0, "the cache answered");
        } else {
            assert_eq!(s.remote_cached, 0, "no cache: every denial a round trip");
        }
        Run {
            rate: decisions as f64 / elapsed.as_secs_f64(),
            decisions,
            reached,
            allowed: Some(allowed),
        }
    })
}

fn delta(after: &Stats, before: &Stats) -> Stats {
    Stats {
        allowed: after.allowed - before.allowed,
        limited: after.limited - before.limited,
        remote_calls: after.remote_calls - before.remote_calls,
        remote_errors: after.remote_errors - before.remote_errors,
        remote_cached: after.remote_cached - before.remote_cached,
        ..Stats::default()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One case's medians: (rate, decisions, reached, allowed).
fn medians(runs: &[Run]) -> (f64, f64, f64, Option<f64>) {
    let of = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let allowed = runs.iter().map(|r| r.allowed.map(|a| a as f64));
    (
        of(|r| r.rate),
        of(|r| r.decisions as f64),
        of(|r| r.reached as f64),
        allowed.collect::<Option<Vec<f64>>>().map(median),
    )
}

fn main() {
    let a = args();
    // Our own server unless told which; kept alive to the end, then killed.
    let own = match (&a.port, &a.cell) {
        (Some(_), _) => None,
        (None, Some(cell)) => Some(Redis::start_with(&[
            "--loadmodule",
            cell.to_str().expect("a UTF-8 module path"),
        ])),
        (None, None) => Some(Redis::start()),
    };
    let port = a.port.or(own.as_ref().map(|r| r.port)).unwrap_or_default();
    if cli(port, &["PING"]) != "PONG" {
        eprintln!("flood: no Redis answers on 127.0.0.1:{port}");
        std::process::exit(1);
    }
    let has_cell = cli(port, &["COMMAND", "INFO", "CL.THROTTLE"]).contains("cl.throttle");

    let tasks = a.tasks.to_string();
    let (n1, np) = (a.n1, a.np);
    type Case<'c> = (&'c str, &'c str, Box<dyn Fn() -> Run + 'c>);
    let mut cases: Vec<Case> = vec![
        (
            "ratecard, denials cached (default)",
            "1",
            Box::new(|| our_flood(&a, port, true, 1)),
        ),
        (
            "ratecard, `cache_denials: false`",
            "1",
            Box::new(|| our_flood(&a, port, false, 1)),
        ),
        (
            "ratecard, `cache_denials: false`",
            &tasks,
            Box::new(|| our_flood(&a, port, false, a.tasks)),
        ),
    ];
    if has_cell {
        cases.push((
            "redis-cell `CL.THROTTLE`, 1 connection",
            "1",
            Box::new(move || cell_flood(port, &["-c", "1"], n1)),
        ));
        cases.push((
            "redis-cell `CL.THROTTLE`, 50 connections, pipeline 16",
            "800",
            Box::new(move || cell_flood(port, &["-c", "50", "-P", "16"], np)),
        ));
    } else {
        eprintln!("flood: no CL.THROTTLE on this server (pass --cell): ratecard's rows only");
    }

    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); cases.len()];
    for round in 1..=a.rounds {
        for (i, (name, in_flight, run)) in cases.iter().enumerate() {
            let r = run();
            eprintln!(
                "flood round {round}: {name} ({in_flight} in flight): {:.0}/s, {} decisions, {} reached Redis",
                r.rate, r.decisions, r.reached
            );
            runs[i].push(r);
        }
    }
    let figures: Vec<(f64, f64, f64, Option<f64>)> = runs.iter().map(|r| medians(r)).collect();
    let cell = has_cell.then(|| (figures[3].0, figures[4].0));

    println!(
        "\nOne client IP flooding sign-ins after Redis limited it; {} round{}, medians; \
         ratecard: {} s or {} decisions per case, one client thread.\n",
        a.rounds,
        if a.rounds == 1 { "" } else { "s" },
        a.seconds,
        a.calls
    );
    println!(
        "| case | in flight | decisions/s | decisions | allowed | reached Redis | \
         vs redis-cell, 1 connection | vs redis-cell, pipelined |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for ((name, in_flight, _), (rate, decisions, reached, allowed)) in cases.iter().zip(&figures) {
        let vs = |c: Option<f64>| c.map_or("–".to_string(), |c| format!("{:.2}×", rate / c));
        let allowed = allowed.map_or("–".to_string(), |a| format!("{a:.0}"));
        println!(
            "| {name} | {in_flight} | {rate:.0}/s | {decisions:.0} | {allowed} | {reached:.0} | {} | {} |",
            vs(cell.map(|c| c.0)),
            vs(cell.map(|c| c.1)),
        );
    }
    if let Some((_, pipelined)) = cell {
        let ratio = figures[0].0 / pipelined;
        println!(
            "\n| bar | ratio | needs | |\n| --- | ---: | ---: | --- |\n\
             | flood from one limited client: ratecard / redis-cell pipelined | {ratio:.1}× | ≥ 10× | {} |",
            if ratio >= 10.0 { "met" } else { "MISSED" }
        );
    }
}
