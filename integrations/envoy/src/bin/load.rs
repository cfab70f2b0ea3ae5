//! `ratecard-rls-load`: what a decision costs through the service, and the
//! same decision through the C ABI and through Limitador's library, in one
//! run. Bounded in calls and in time.
//!
//! ```sh
//! cargo build --release -p ratecard-rls --features bench
//! target/release/ratecard-rls-load            # starts target/release/ratecard-rls on 127.0.0.1
//! ```
//!
//! - gRPC: `ShouldRateLimit` on loopback against the service as a process,
//!   one call at a time (latency) and many at once (throughput): calls per
//!   second, median and p99 latency.
//! - C ABI: `ratecard_check` from the `ratecard-ffi` crate (linked as an
//!   rlib), with `ratecard_now_ns`, on an identical table in this process.
//! - handler: the service's own work without transport: the request
//!   decoded, classified, decided and the response encoded.
//! - Limitador 0.14 (in-memory storage): Clerk's table as Limitador limits
//!   with CEL conditions over the same descriptor, checked and updated
//!   through the context Limitador's own server builds (a `descriptors`
//!   list); it is handed the path's ids as entries of their own, since it
//!   has no route templates.
//!
//! In-process figures are thread CPU time, so a busy machine's other
//! processes do not count; gRPC figures are wall-clock time on loopback,
//! client and server sharing the machine.
//!
//! Two request shapes: `GET /v1/users/me` (one rule, 10 000 production
//! keys) and `PATCH /v1/users/{id}` (two rules, 10 000 keys by 100 000
//! users).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    rate_limit_descriptor::Entry, RateLimitDescriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use prost::Message;
use ratecard_rls::descriptor::WireRequest;
use ratecard_rls::engine::{Local, TableConfig};
use ratecard_rls::server::Rls;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const SEED: [u8; 16] = *b"ratecard-rls-lo\0";
const KEYS: usize = 10_000;
const USERS: usize = 100_000;
const CAPACITY: u32 = 1 << 20;

struct Options {
    calls: usize,
    seconds: u64,
    concurrency: usize,
    connections: usize,
    batches: usize,
    batch: usize,
    warmup: usize,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        calls: 100_000,
        seconds: 10,
        concurrency: 16,
        connections: 4,
        batches: 30,
        batch: 10_000,
        warmup: KEYS.max(USERS),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let n: usize = value.parse().map_err(|_| format!("{flag}: not a number"))?;
        match flag.as_str() {
            "--calls" => o.calls = n.max(1),
            "--seconds" => o.seconds = n.max(1) as u64,
            "--concurrency" => o.concurrency = n.max(1),
            "--connections" => o.connections = n.max(1),
            "--batches" => o.batches = n.max(1),
            "--batch" => o.batch = n.max(1),
            "--warmup" => o.warmup = n,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; flags: --calls N (per gRPC run) --seconds N (cap per run) \
                     --concurrency N --connections N --batches N --batch N (decisions per batch, \
                     in process) --warmup N (decisions before the batches; default: every key once)"
                ))
            }
        }
    }
    Ok(o)
}

/// One request shape, as descriptor entries.
#[derive(Copy, Clone, Debug)]
enum Shape {
    /// `GET /v1/users/me`: the instance rule.
    Me,
    /// `PATCH /v1/users/{id}`: the instance rule and the user's.
    Update,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Me => "GET /v1/users/me (1 rule)",
            Shape::Update => "PATCH /v1/users/{id} (2 rules)",
        }
    }

    /// Method, path, key and user of the `i`-th request.
    fn parts(self, i: usize) -> (&'static str, String, String, String) {
        let key = format!("Bearer sk_live_load_{:05}", i % KEYS);
        let user = format!("user_{:06}", i % USERS);
        match self {
            Shape::Me => ("GET", "/v1/users/me".into(), key, user),
            Shape::Update => ("PATCH", format!("/v1/users/{user}"), key, user),
        }
    }

    /// The rules a request of this shape matches.
    fn rules(self) -> &'static [&'static str] {
        match self {
            Shape::Me => &["bapi.instance.production"],
            Shape::Update => &["bapi.instance.production", "bapi.users.update"],
        }
    }

    fn request(self, i: usize) -> RateLimitRequest {
        let (method, path, key, _) = self.parts(i);
        let entry = |k: &str, v: &str| Entry {
            key: k.into(),
            value: v.into(),
        };
        RateLimitRequest {
            domain: "clerk".into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![
                    entry("api", "backend"),
                    entry("method", method),
                    entry("path", &path),
                    entry("remote_address", "192.0.2.10"),
                    entry("authorization", &key),
                ],
                ..Default::default()
            }],
            hits_addend: 0,
        }
    }
}

/// The service as a child process, killed when dropped.
struct Service {
    child: Child,
    uri: String,
}

impl Service {
    fn start() -> Result<Service, String> {
        let exe = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("ratecard-rls");
        let seed: String = SEED.iter().map(|b| format!("{b:02x}")).collect();
        let mut child = Command::new(&exe)
            .args(["--listen", "127.0.0.1:0", "--seed", &seed])
            .args(["--capacity", &CAPACITY.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e} (cargo build --release -p ratecard-rls --features bench)",
                    exe.display()
                )
            })?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .ok_or(format!("no address in {line:?}"))?
            .to_string();
        Ok(Service {
            child,
            uri: format!("http://{addr}"),
        })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run {
    calls: usize,
    over_limit: usize,
    elapsed: Duration,
    latencies: Vec<u64>,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or(0) as f64 / 1000.0
    }
}

/// What a load task calls: `ShouldRateLimit` of one shape, or the health
/// check (a unary call of the same stack doing no work: the transport's
/// share).
#[derive(Copy, Clone)]
enum Target {
    Rls(Shape),
    Health,
}

enum Caller {
    Rls(RateLimitServiceClient<Channel>, Arc<Vec<RateLimitRequest>>),
    Health(HealthClient<Channel>),
}

impl Caller {
    /// One call; whether it was answered `OVER_LIMIT`.
    async fn call(&mut self, i: usize) -> Result<bool, String> {
        match self {
            Caller::Rls(client, requests) => {
                let req = requests[i % requests.len()].clone();
                let r = client
                    .should_rate_limit(req)
                    .await
                    .map_err(|s| s.to_string())?;
                Ok(r.get_ref().overall_code == Code::OverLimit as i32)
            }
            Caller::Health(client) => {
                let req = HealthCheckRequest {
                    service: String::new(),
                };
                client.check(req).await.map_err(|s| s.to_string())?;
                Ok(false)
            }
        }
    }
}

async fn grpc_run(
    channels: &[Channel],
    target: Target,
    concurrency: usize,
    o: &Options,
) -> Result<Run, String> {
    let requests: Arc<Vec<RateLimitRequest>> = Arc::new(match target {
        Target::Rls(shape) => (0..KEYS.max(USERS)).map(|i| shape.request(i)).collect(),
        Target::Health => Vec::new(),
    });
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let channel = channels[t % channels.len()].clone();
        let mut caller = match target {
            Target::Rls(_) => {
                Caller::Rls(RateLimitServiceClient::new(channel), Arc::clone(&requests))
            }
            Target::Health => Caller::Health(HealthClient::new(channel)),
        };
        let (next, calls) = (Arc::clone(&next), o.calls);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(calls / concurrency + 1);
            let mut over = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls || Instant::now() >= deadline {
                    break;
                }
                let t0 = Instant::now();
                let over_limit = caller.call(i).await?;
                latencies.push(t0.elapsed().as_nanos() as u64);
                over += usize::from(over_limit);
            }
            Ok::<_, String>((latencies, over))
        }));
    }
    let mut run = Run {
        calls: 0,
        over_limit: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (l, over) = t.await.map_err(|e| e.to_string())??;
        run.latencies.extend(l);
        run.over_limit += over;
    }
    run.elapsed = start.elapsed();
    run.calls = run.latencies.len();
    run.latencies.sort_unstable();
    Ok(run)
}

fn print_run(label: &str, concurrency: usize, run: &Run) {
    println!(
        "  {label}, {concurrency:>2} in flight: {:>8.0} calls/s  median {:>7.1} µs  p99 {:>7.1} µs  ({} calls, {} over limit)",
        run.per_sec(),
        run.percentile(0.5),
        run.percentile(0.99),
        run.calls,
        run.over_limit
    );
}

async fn connect(uri: &str, n: usize) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::new();
    for _ in 0..n {
        let endpoint = Endpoint::from_shared(uri.to_string()).map_err(|e| e.to_string())?;
        channels.push(
            endpoint
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(channels)
}

/// This thread's CPU time: time the scheduler gave to other processes on a
/// shared machine is not counted.
fn cpu_now() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Median nanoseconds (of this thread's CPU time) per call of `f` over
/// `o.batches` batches of `o.batch` calls, after `o.warmup` calls.
fn per_decision(o: &Options, mut f: impl FnMut(usize)) -> f64 {
    let mut i = 0;
    for _ in 0..o.warmup {
        f(i);
        i += 1;
    }
    let mut times: Vec<f64> = (0..o.batches)
        .map(|_| {
            let t0 = cpu_now();
            for _ in 0..o.batch {
                f(i);
                i = i.wrapping_add(1);
            }
            (cpu_now() - t0).as_nanos() as f64 / o.batch as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The C ABI on a table like the service's.
struct CAbi {
    limiter: *mut ratecard_ffi::ratecard_limiter,
}

impl CAbi {
    fn new() -> Result<CAbi, String> {
        let mut config = std::mem::MaybeUninit::<ratecard_ffi::ratecard_config>::uninit();
        // SAFETY: `config` is writable; the call fills it.
        let mut config = unsafe {
            ratecard_ffi::ratecard_config_default(config.as_mut_ptr());
            config.assume_init()
        };
        config.capacity = CAPACITY;
        config.seed = SEED.as_ptr();
        config.seed_len = SEED.len();
        let mut limiter = std::ptr::null_mut();
        // SAFETY: valid config and out-pointer.
        let status = unsafe { ratecard_ffi::ratecard_limiter_new(&config, &mut limiter) };
        if status != ratecard_ffi::RATECARD_OK {
            return Err(format!("ratecard_limiter_new: status {status}"));
        }
        Ok(CAbi { limiter })
    }

    fn check(&self, method: &str, path: &str, key: &str) -> bool {
        let ip = [192u8, 0, 2, 10];
        let request = ratecard_ffi::ratecard_request {
            api: ratecard_ffi::RATECARD_API_BACKEND,
            method: method.as_ptr(),
            method_len: method.len(),
            path: path.as_ptr(),
            path_len: path.len(),
            client_ip: ip.as_ptr(),
            client_ip_len: ip.len(),
            secret_key: key.as_ptr(),
            secret_key_len: key.len(),
            tenant: std::ptr::null(),
            tenant_len: 0,
            cost: 1,
        };
        let mut now = 0u64;
        let mut out = std::mem::MaybeUninit::<ratecard_ffi::ratecard_decision>::uninit();
        // SAFETY: a live handle, a request whose pointers outlive the call,
        // writable out-pointers.
        unsafe {
            ratecard_ffi::ratecard_now_ns(&mut now);
            let status =
                ratecard_ffi::ratecard_check(self.limiter, &request, now, out.as_mut_ptr());
            status == ratecard_ffi::RATECARD_OK && out.assume_init().allowed
        }
    }
}

impl Drop for CAbi {
    fn drop(&mut self) {
        // SAFETY: the handle from ratecard_limiter_new, freed once.
        unsafe { ratecard_ffi::ratecard_limiter_free(self.limiter) }
    }
}

/// Clerk's table as Limitador limits over the descriptor Envoy sends (plus
/// the ids Limitador cannot take from the path itself); only the rules
/// named in `only`, if given.
fn limitador_limits(only: Option<&[&str]>) -> Result<Vec<limitador::limit::Limit>, String> {
    use limitador::limit::{Expression, Limit, Predicate};
    const D: &str = "descriptors[0]";
    let frontend =
        |paths: &str| format!("{D}.api == 'frontend' && {D}.method == 'POST' && ({paths})");
    let eq = |paths: &[&str]| {
        paths
            .iter()
            .map(|p| format!("{D}.path == '{p}'"))
            .collect::<Vec<_>>()
            .join(" || ")
    };
    let live = format!("{D}.authorization.startsWith('Bearer sk_live_')");
    let backend = format!("{D}.api == 'backend' && {D}.path != '/v1/jwks'");
    let rows: Vec<(&str, u64, u64, String, Vec<&str>)> = vec![
        ("fapi.sign_ins.create", 5, 10, frontend(&eq(&["/v1/sign_ins", "/v1/client/sign_ins"])), vec!["remote_address"]),
        ("fapi.sign_ups.create", 5, 10, frontend(&eq(&["/v1/sign_ups", "/v1/client/sign_ups"])), vec!["remote_address"]),
        ("fapi.sign_ins.attempt", 3, 10, frontend(&format!(
            "{D}.path.contains('/sign_ins') && ({D}.path.endsWith('/attempt_first_factor') || {D}.path.endsWith('/attempt_second_factor'))"
        )), vec!["remote_address"]),
        ("fapi.sign_ups.attempt", 3, 10, frontend(&format!(
            "{D}.path.contains('/sign_ups') && {D}.path.endsWith('/attempt_verification')"
        )), vec!["remote_address"]),
        ("bapi.instance.production", 1000, 10, format!("{backend} && {live}"), vec!["authorization"]),
        ("bapi.instance.development", 100, 10, format!("{backend} && !{live}"), vec!["authorization"]),
        ("bapi.invitations.create", 100, 3600, format!("{D}.method == 'POST' && {D}.path == '/v1/invitations'"), vec!["authorization"]),
        ("bapi.invitations.bulk", 25, 3600, format!("{D}.method == 'POST' && {D}.path == '/v1/invitations/bulk'"), vec!["authorization"]),
        ("bapi.org_invitations.create", 250, 3600, format!(
            "{D}.method == 'POST' && {D}.path.startsWith('/v1/organizations/') && {D}.path.endsWith('/invitations')"
        ), vec!["authorization"]),
        ("bapi.org_invitations.bulk", 50, 3600, format!(
            "{D}.method == 'POST' && {D}.path.startsWith('/v1/organizations/') && {D}.path.endsWith('/invitations/bulk')"
        ), vec!["authorization"]),
        ("bapi.users.update", 10, 10, format!(
            "({D}.method == 'PATCH' || {D}.method == 'PUT') && {D}.path.startsWith('/v1/users/')"
        ), vec!["authorization", "user_id"]),
        ("bapi.organizations.update", 10, 10, format!(
            "({D}.method == 'PATCH' || {D}.method == 'PUT') && {D}.path.startsWith('/v1/organizations/') && !{D}.path.contains('/memberships/')"
        ), vec!["authorization", "organization_id"]),
        ("bapi.memberships.update", 10, 10, format!(
            "{D}.method == 'PATCH' && {D}.path.contains('/memberships/')"
        ), vec!["authorization", "organization_id", "user_id"]),
    ];
    rows.into_iter()
        .filter(|row| only.is_none_or(|names| names.contains(&row.0)))
        .map(|(name, max, secs, condition, vars)| {
            let condition = Predicate::parse(condition).map_err(|e| format!("{name}: {e}"))?;
            let vars = vars
                .iter()
                .map(|v| Expression::parse(format!("{D}.{v}")))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{name}: {e}"))?;
            let mut limit = Limit::with_id(name, "clerk", max, secs, [condition], vars);
            limit.set_name(name.into());
            Ok(limit)
        })
        .collect()
}

fn limitador_descriptor(shape: Shape, i: usize) -> HashMap<String, String> {
    let (method, path, key, user) = shape.parts(i);
    let mut d = HashMap::new();
    for (k, v) in [
        ("api", "backend".to_string()),
        ("method", method.to_string()),
        ("path", path),
        ("remote_address", "192.0.2.10".into()),
        ("authorization", key),
    ] {
        d.insert(k.to_string(), v);
    }
    if let Shape::Update = shape {
        d.insert("user_id".into(), user);
    }
    d
}

fn main() {
    if let Err(e) = run() {
        eprintln!("ratecard-rls-load: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let o = options()?;
    let service = Service::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cabi = CAbi::new()?;
    let local = Local::new(&TableConfig {
        capacity: CAPACITY,
        seed: SEED,
        dry_run: false,
    })
    .map_err(|e| e.to_string())?;
    let handler = Rls::new(local, "clerk", None);
    let limitador = limitador::RateLimiter::new(1_000_000);
    for limit in limitador_limits(None)? {
        limitador.add_limit(limit);
    }
    let namespace: limitador::limit::Namespace = "clerk".into();

    println!(
        "ratecard-rls-load: {} calls or {} s per gRPC run (wall clock), {} connections; \
         in process the median of {} batches of {} (thread CPU time)",
        o.calls, o.seconds, o.connections, o.batches, o.batch
    );
    println!("\ntransport alone: grpc.health.v1 Check on the same service");
    let channels = runtime.block_on(connect(&service.uri, o.connections))?;
    for concurrency in [1, o.concurrency] {
        let run = runtime.block_on(grpc_run(&channels, Target::Health, concurrency, &o))?;
        print_run("gRPC health Check   ", concurrency, &run);
    }
    for shape in [Shape::Me, Shape::Update] {
        println!("\n{}", shape.name());
        let channels = runtime.block_on(connect(&service.uri, o.connections))?;
        let mut grpc_median = 0.0;
        for concurrency in [1, o.concurrency] {
            let run = runtime.block_on(grpc_run(&channels, Target::Rls(shape), concurrency, &o))?;
            if concurrency == 1 {
                grpc_median = run.percentile(0.5) * 1000.0;
            }
            print_run("gRPC ShouldRateLimit", concurrency, &run);
        }

        let wire: Vec<Vec<u8>> = (0..KEYS.max(USERS))
            .map(|i| shape.request(i).encode_to_vec())
            .collect();
        let handler_ns = per_decision(&o, |i| {
            let Ok(req) = WireRequest::decode(wire[i % wire.len()].as_slice()) else {
                return;
            };
            let answered = futures_ready(handler.answer(&req));
            if let Some(Ok(r)) = answered {
                std::hint::black_box(r.encode_to_vec());
            }
        });
        let parts: Vec<_> = (0..KEYS.max(USERS)).map(|i| shape.parts(i)).collect();
        let cabi_ns = per_decision(&o, |i| {
            let (m, p, k, _) = &parts[i % parts.len()];
            std::hint::black_box(cabi.check(m, p, k));
        });
        let descriptors: Vec<_> = (0..KEYS.max(USERS))
            .map(|i| limitador_descriptor(shape, i))
            .collect();
        let limitador_check = |limiter: &limitador::RateLimiter, i: usize| {
            let mut ctx = limitador::limit::Context::default();
            ctx.list_binding(
                "descriptors".into(),
                vec![descriptors[i % descriptors.len()].clone()],
            );
            let r = limiter.check_rate_limited_and_update(&namespace, &ctx, 1);
            std::hint::black_box(r.map(|r| r.limited).unwrap_or(true));
        };
        let limitador_ns = per_decision(&o, |i| limitador_check(&limitador, i));
        // The same with only the limits this request matches loaded: the
        // least Limitador can do for it.
        let matching = limitador::RateLimiter::new(1_000_000);
        for limit in limitador_limits(Some(shape.rules()))? {
            matching.add_limit(limit);
        }
        let matching_ns = per_decision(&o, |i| limitador_check(&matching, i));
        println!("  handler (decode, decide, encode): {handler_ns:>8.0} ns per call");
        println!("  C ABI ratecard_check:             {cabi_ns:>8.0} ns per decision");
        println!("  Limitador 0.14, Clerk's 13 limits: {limitador_ns:>7.0} ns per decision");
        println!("  Limitador 0.14, matching only:    {matching_ns:>8.0} ns per decision");
        println!(
            "  ratios: gRPC median / C ABI {:.0}x, handler / C ABI {:.1}x, \
             Limitador / C ABI {:.1}x (matching only {:.1}x)",
            grpc_median / cabi_ns,
            handler_ns / cabi_ns,
            limitador_ns / cabi_ns,
            matching_ns / cabi_ns
        );
    }
    Ok(())
}

/// The output of a future that needs no waiting (the in-process backend's),
/// or `None` if it would wait.
fn futures_ready<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
