//! What one decision through Redis costs from this client, against the
//! floors of the same run: `redis-benchmark`'s `PING` and an empty
//! `EVALSHA` (the server's own client, one connection, one call in
//! flight), and `PING` through this client's own stack.
//!
//! ```sh
//! cargo run --release -p ratecard-redis --example latency            # 20 000 calls a case
//! cargo run --release -p ratecard-redis --example latency -- --calls 2000 --seconds 2
//! ```
//!
//! Starts its own `redis-server` on 127.0.0.1 (a free port, no
//! persistence) and stops it at the end. Every loop is bounded by
//! `--calls` and `--seconds`. Latencies are wall-clock, one call in flight,
//! client and server on the same machine; the client runs on one thread.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Redis;
use ratecard::{Api, Config, Limiter, Request, Seed, CLERK};
use ratecard_redis::{Options, RedisBackend};

struct Figures {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
}

fn figures(mut samples: Vec<Duration>, total: Duration) -> Figures {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    Figures {
        rate: samples.len() as f64 / total.as_secs_f64(),
        p50_us: at(0.5),
        p99_us: at(0.99),
    }
}

/// `redis-benchmark` on one connection, one call in flight: its CSV row.
fn redis_benchmark(redis: &Redis, calls: usize, command: &[&str]) -> Figures {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
        .args(["-c", "1", "-P", "1", "-n", &calls.to_string(), "--csv"])
        .args(command)
        .output()
        .expect("run redis-benchmark (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    let row = text
        .lines()
        .find(|l| !l.starts_with("\"test\"") && !l.is_empty())
        .unwrap_or_else(|| panic!("no result from redis-benchmark: {text}"));
    let f: Vec<f64> = row
        .split(',')
        .skip(1)
        .map(|v| v.trim_matches('"').parse().unwrap_or(f64::NAN))
        .collect();
    Figures {
        rate: f[0],
        p50_us: f[3] * 1e3,
        p99_us: f[5] * 1e3,
    }
}

fn print(name: &str, f: &Figures, floor: &Figures) {
    println!(
        "| {name} | {:.0}/s | {:.1} µs | {:.1} µs | {:.2}× | {:.2}× |",
        f.rate,
        f.p50_us,
        f.p99_us,
        f.p50_us / floor.p50_us,
        f.p99_us / floor.p99_us
    );
}

fn main() {
    let mut calls = 20_000usize;
    let mut seconds = 10u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), v) {
            ("--calls", Some(v)) => calls = v,
            ("--seconds", Some(v)) => seconds = v as u64,
            _ => {
                eprintln!("usage: latency [--calls N] [--seconds S]");
                std::process::exit(2);
            }
        }
    }
    let budget = Duration::from_secs(seconds);
    let redis = Redis::start();

    let ping = redis_benchmark(&redis, calls, &["-t", "ping_mbulk"]);
    let sha = redis.cli(&["SCRIPT", "LOAD", "return 1"]);
    let empty = redis_benchmark(&redis, calls, &["EVALSHA", &sha, "0"]);

    let config = Config {
        capacity: 1 << 16,
        ..Config::DEFAULT
    };
    let limiter = Limiter::new(&config, CLERK, Seed::from_bytes(*b"latency seed 012")).unwrap();
    let backend = RedisBackend::new(
        Arc::new(limiter),
        Options {
            timeout: Duration::from_secs(1),
            ..Options::new(redis.addr())
        },
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("sk_live_{i}").into_bytes())
        .collect();
    let users: Vec<Vec<u8>> = (0..10_000)
        .map(|i| format!("/v1/users/user_{i}").into_bytes())
        .collect();

    let (our_ping, sign_in, patch) = runtime.block_on(async {
        // PING through this client: its own floor.
        let mut samples = Vec::with_capacity(calls);
        let start = Instant::now();
        for _ in 0..calls {
            let t = Instant::now();
            backend.ping().await.expect("PING");
            samples.push(t.elapsed());
            if start.elapsed() > budget {
                break;
            }
        }
        let our_ping = figures(samples, start.elapsed());

        // A Frontend sign-in (one rule), over 65 536 client IPs: allowed.
        let mut samples = Vec::with_capacity(calls);
        let start = Instant::now();
        for i in 0..calls {
            let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([
                10,
                1,
                (i >> 8) as u8,
                i as u8,
            ]);
            let t = Instant::now();
            backend.check(&r).await.expect("a decision");
            samples.push(t.elapsed());
            if start.elapsed() > budget {
                break;
            }
        }
        let sign_in = figures(samples, start.elapsed());

        // PATCH /v1/users/{id} (two rules, one round trip), 1000 instances.
        let mut samples = Vec::with_capacity(calls);
        let start = Instant::now();
        for i in 0..calls {
            let r = Request::new(Api::Backend, b"PATCH", &users[i % users.len()])
                .key(&keys[i % keys.len()]);
            let t = Instant::now();
            backend.check(&r).await.expect("a decision");
            samples.push(t.elapsed());
            if start.elapsed() > budget {
                break;
            }
        }
        (our_ping, sign_in, figures(samples, start.elapsed()))
    });
    let s = backend.limiter().stats();
    assert_eq!(s.remote_errors, 0, "every call answered");

    println!("| case | rate | median | p99 | median / PING | p99 / PING |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    print("redis-benchmark `PING`", &ping, &ping);
    print("redis-benchmark empty `EVALSHA`", &empty, &ping);
    print("this client, `PING`", &our_ping, &ping);
    print("decision: Frontend sign-in (1 rule)", &sign_in, &ping);
    print("decision: `PATCH /v1/users/{id}` (2 rules)", &patch, &ping);
    println!(
        "({} round trips, {} allowed, {} limited)",
        s.remote_calls, s.allowed, s.limited
    );
}
