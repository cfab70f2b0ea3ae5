//! A tour of ratecard on Clerk's table: a brute-force burst against
//! sign-in, and a bulk user-update job paced so it never draws a 429.
//!
//! Run: `cargo run -p ratecard --example demo`

use ratecard::{Api, Config, Decision, Limiter, Nanos, Request, Seed, Verdict, CLERK};

const SEC: u64 = 1_000_000_000;

fn main() {
    let enforcer = limiter(Config::DEFAULT);
    println!("== A brute-force burst: one IP, 8 sign-in attempts at once, then one 2 s later ==");
    let ip = [203, 0, 113, 9];
    let sign_in = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(ip);
    let mut now = 10 * SEC;
    for i in 1..=8 {
        show(
            &enforcer,
            &format!("attempt {i} at t=10.0s"),
            &enforcer.check(&sign_in, Nanos(now)).unwrap(),
        );
    }
    now += 2 * SEC;
    show(
        &enforcer,
        "attempt 9 at t=12.0s",
        &enforcer.check(&sign_in, Nanos(now)).unwrap(),
    );

    println!("\n== An IPv4-mapped IPv6 spelling of the same client is the same client ==");
    let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 9];
    let sneaky = Request::new(Api::Frontend, b"post", b"//v1/client/./sign_ins/?x=1").ip(mapped);
    show(
        &enforcer,
        "attempt 10 (mapped IPv6, odd spelling)",
        &enforcer.check(&sneaky, Nanos(now)).unwrap(),
    );

    println!("\n== A bulk job: 25 metadata updates of one user, paced (burst 1) ==");
    let pacer = limiter(Config {
        pace: true,
        ..Config::DEFAULT
    });
    let key = b"Bearer sk_live_0123456789abcdef0123456789abcdef01234567";
    let update = Request::new(Api::Backend, b"PATCH", b"/v1/users/user_2abc/metadata").key(key);
    let mut t = 100 * SEC;
    let mut sent = 0;
    let mut waited = 0;
    while sent < 25 {
        let d = pacer.check(&update, Nanos(t)).unwrap();
        if d.allowed() {
            sent += 1;
            if sent <= 3 || sent == 25 {
                show(
                    &pacer,
                    &format!(
                        "update {sent} at t={:.1}s",
                        (t - 100 * SEC) as f64 / SEC as f64
                    ),
                    &d,
                );
            }
        } else if let Some(wait) = d.retry_after() {
            waited += wait.0;
            t += wait.0;
        } else {
            unreachable!("a paced update of cost 1 always fits: {d:?}");
        }
    }
    println!(
        "   25 updates took {:.1}s of waiting, never more than 10 in any 10 s window: zero 429s",
        waited as f64 / SEC as f64
    );

    println!("\n== GET /v1/jwks is exempt; GET /v1/users/me counts against the instance only ==");
    let jwks = Request::new(Api::Backend, b"GET", b"/v1/jwks").key(key);
    show(
        &enforcer,
        "GET /v1/jwks",
        &enforcer.check(&jwks, Nanos(now)).unwrap(),
    );
    let me = Request::new(Api::Backend, b"GET", b"/v1/users/me").key(key);
    show(
        &enforcer,
        "GET /v1/users/me",
        &enforcer.check(&me, Nanos(now)).unwrap(),
    );

    let s = enforcer.stats();
    println!(
        "\nenforcer counters: {} allowed, {} limited, {} exempt, {} of {} slots live",
        s.allowed, s.limited, s.exempt, s.occupancy, s.capacity
    );
}

fn limiter(config: Config) -> Limiter<'static> {
    let seed = Seed::random().expect("the OS has a random source");
    Limiter::new(&config, CLERK, seed).expect("the default configuration is valid")
}

fn show(l: &Limiter<'_>, what: &str, d: &Decision) {
    let mut buf = [0u8; 512];
    let Ok(response) = d.write_response(l.rules(), &mut buf) else {
        println!("{what:<42} -> (response longer than {} bytes)", buf.len());
        return;
    };
    let status = match (d.verdict, response.status) {
        (Verdict::Exempt, _) => "200 exempt",
        (_, 0) => "200",
        _ => "429",
    };
    println!("{what:<42} -> {status}");
    let text = |range: std::ops::Range<usize>| String::from_utf8_lossy(&buf[range]).into_owned();
    if !response.ratelimit.is_empty() {
        println!("   RateLimit: {}", text(response.ratelimit.clone()));
    }
    if response.status != 0 {
        println!("   Retry-After: {}", text(response.retry_after.clone()));
        println!(
            "   RateLimit-Policy: {}",
            text(response.ratelimit_policy.clone())
        );
    }
}
