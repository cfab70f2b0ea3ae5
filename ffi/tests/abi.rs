//! The C ABI, called from Rust: it decides exactly as the Rust limiter does,
//! and takes its inputs at any alignment.

use std::ffi::CStr;
use std::net::IpAddr;
use std::ptr;

use ratecard::*;
use ratecard_core::{Api, Config, Limiter, Nanos, Request, Seed, Verdict, CLERK};

const SEED: [u8; 16] = *b"0123456789abcdef";
const SEC: u64 = 1_000_000_000;

fn default_config() -> ratecard_config {
    let mut c = std::mem::MaybeUninit::<ratecard_config>::uninit();
    // SAFETY: a valid out-pointer; config_default fills every field.
    unsafe {
        ratecard_config_default(c.as_mut_ptr());
        c.assume_init()
    }
}

fn c_limiter(capacity: u32) -> *mut ratecard_limiter {
    let mut c = default_config();
    c.capacity = capacity;
    c.seed = SEED.as_ptr();
    c.seed_len = SEED.len();
    let mut l = ptr::null_mut();
    // SAFETY: valid config and out-pointer.
    assert_eq!(unsafe { ratecard_limiter_new(&c, &mut l) }, RATECARD_OK);
    l
}

/// A request's C form, with the IP bytes it points to.
struct CRequest {
    ip: [u8; 16],
    r: ratecard_request,
}

fn c_request(r: &Request<'_>) -> Box<CRequest> {
    let (ip, ip_len) = match r.client_ip {
        None => ([0; 16], 0),
        Some(IpAddr::V4(v4)) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&v4.octets());
            (b, 4)
        }
        Some(IpAddr::V6(v6)) => (v6.octets(), 16),
    };
    let mut c = Box::new(CRequest {
        ip,
        r: ratecard_request {
            api: r.api as u32,
            method: r.method.as_ptr(),
            method_len: r.method.len(),
            path: r.path.as_ptr(),
            path_len: r.path.len(),
            client_ip: ptr::null(),
            client_ip_len: ip_len,
            secret_key: r.secret_key.as_ptr(),
            secret_key_len: r.secret_key.len(),
            tenant: r.tenant.as_ptr(),
            tenant_len: r.tenant.len(),
            cost: r.cost,
        },
    });
    if ip_len > 0 {
        c.r.client_ip = c.ip.as_ptr();
    }
    c
}

fn c_check(l: *const ratecard_limiter, r: &ratecard_request, now: u64) -> ratecard_decision {
    let mut got = std::mem::MaybeUninit::<ratecard_decision>::uninit();
    // SAFETY: live handle, valid request and out-pointer.
    assert_eq!(
        unsafe { ratecard_check(l, r, now, got.as_mut_ptr()) },
        RATECARD_OK
    );
    // SAFETY: written on RATECARD_OK.
    unsafe { got.assume_init() }
}

#[test]
fn c_abi_decisions_equal_the_rust_limiters() {
    let config = Config {
        capacity: 4096,
        ..Config::DEFAULT
    };
    let rust = Limiter::new(&config, CLERK, Seed::from_bytes(SEED)).unwrap();
    let c = c_limiter(4096);
    let ip = [10, 0, 0, 1];
    let requests = [
        Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(ip),
        Request::new(Api::Frontend, b"POST", b"/v1/sign_ins/attempt_first_factor").ip(ip),
        Request::new(Api::Backend, b"PATCH", b"/v1/users/user_1").key(b"Bearer sk_live_x"),
        Request::new(Api::Backend, b"POST", b"/v1/invitations/bulk")
            .key(b"sk_test_y")
            .cost(3),
        Request::new(Api::Backend, b"POST", b"/v1/invitations/bulk")
            .key(b"sk_test_z")
            .cost(26),
        Request::new(Api::Backend, b"GET", b"/v1/jwks").key(b"sk_test_y"),
        Request::new(Api::Frontend, b"GET", b"/v1/environment").ip(ip),
    ];
    let mut seen = [false; 5];
    for step in 0..400u64 {
        let now = 1_000 * SEC + step * (SEC / 7);
        for r in &requests {
            let want = rust.check(r, Nanos(now)).unwrap();
            let cr = c_request(r);
            let got = c_check(c, &cr.r, now);
            let k = match want.verdict {
                Verdict::Allowed => 0,
                Verdict::Limited { .. } => 1,
                Verdict::NeverFits => 2,
                Verdict::Exempt => 3,
                Verdict::Unmatched => 4,
            };
            seen[k] = true;
            assert_eq!(
                (got.allowed, got.exempt, got.dry_run_denied, got.never_fits),
                (
                    want.allowed(),
                    want.verdict == Verdict::Exempt,
                    want.dry_run,
                    want.verdict == Verdict::NeverFits
                )
            );
            let rule = want.rule.map_or(RATECARD_NO_RULE, |r| r.0 as u32);
            assert_eq!(
                (got.rule, got.limit, got.remaining, got.matched),
                (rule, want.limit, want.remaining, want.matched.0)
            );
            assert_eq!(
                (got.reset_ns, got.retry_after_ns, got.retry_after_secs),
                (
                    want.reset.0,
                    want.retry_after().map_or(0, |n| n.0),
                    want.retry_after_secs().unwrap_or(0)
                )
            );
            assert_eq!(got.reserved, [0; 4]);
        }
    }
    assert_eq!(seen, [true; 5], "every verdict was compared");
    // SAFETY: our handle, freed once.
    unsafe { ratecard_limiter_free(c) };
}

#[test]
fn one_call_writes_every_response_field() {
    let c = c_limiter(64);
    let ip = [10, 0, 0, 2];
    let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(ip);
    let cr = c_request(&r);
    let mut d = c_check(c, &cr.r, SEC);
    for _ in 0..5 {
        d = c_check(c, &cr.r, SEC);
    }
    assert!(!d.allowed);
    let mut buf = [0u8; 1024];
    let mut resp = std::mem::MaybeUninit::<ratecard_response>::uninit();
    let mut n = 0usize;
    // SAFETY: live handle, valid decision, buffer and out-pointers.
    let s = unsafe {
        ratecard_write_response(
            c,
            &d,
            buf.as_mut_ptr(),
            buf.len(),
            resp.as_mut_ptr(),
            &mut n,
        )
    };
    assert_eq!(s, RATECARD_OK);
    // SAFETY: written on RATECARD_OK.
    let resp = unsafe { resp.assume_init() };
    let field = |f: ratecard_field| &buf[f.offset..f.offset + f.len];
    assert_eq!(resp.status, RATECARD_LIMITED_STATUS as u32);
    assert_eq!(field(resp.retry_after), b"2");
    assert_eq!(
        field(resp.ratelimit_policy),
        br#""fapi.sign_ins.create";q=5;w=10"#
    );
    assert_eq!(field(resp.ratelimit), br#""fapi.sign_ins.create";r=0;t=10"#);
    assert_eq!(field(resp.body), ratecard_core::CLERK_429_BODY.as_bytes());
    // A short buffer: the length needed, nothing written.
    let mut small = [7u8; 16];
    let mut need = 0usize;
    // SAFETY: as above.
    let s = unsafe {
        ratecard_write_response(
            c,
            &d,
            small.as_mut_ptr(),
            small.len(),
            resp_ptr(),
            &mut need,
        )
    };
    assert_eq!((s, need), (RATECARD_BUFFER_TOO_SHORT, n));
    assert_eq!(small, [7; 16]);
    assert_eq!(RATECARD_FAIL_CLOSED_STATUS, 503);
    // SAFETY: our handle, freed once.
    unsafe { ratecard_limiter_free(c) };
}

fn resp_ptr() -> *mut ratecard_response {
    Box::into_raw(Box::new(ratecard_response {
        status: 0,
        retry_after: ratecard_field::default(),
        ratelimit_policy: ratecard_field::default(),
        ratelimit: ratecard_field::default(),
        body: ratecard_field::default(),
        reserved: [0; 2],
    }))
}

#[test]
fn requests_at_any_alignment_are_read_and_misaligned_handles_refused() {
    let c = c_limiter(64);
    let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([10, 0, 0, 3]);
    let cr = c_request(&r);
    // The request one byte into a buffer: misaligned for its pointers.
    let mut raw = vec![0u8; std::mem::size_of::<ratecard_request>() + 1];
    // SAFETY: the buffer has room for one request after its first byte.
    unsafe { ptr::write_unaligned(raw.as_mut_ptr().add(1).cast(), cr.r) };
    let misaligned = raw[1..].as_ptr().cast::<ratecard_request>();
    let mut d = std::mem::MaybeUninit::<ratecard_decision>::uninit();
    // SAFETY: a readable request at any alignment; valid out-pointer.
    assert_eq!(
        unsafe { ratecard_check(c, misaligned, SEC, d.as_mut_ptr()) },
        RATECARD_OK
    );
    // SAFETY: written on RATECARD_OK.
    assert!(unsafe { d.assume_init_ref() }.allowed);
    let bad = (c as usize + 1) as *const ratecard_limiter;
    // SAFETY: refused before any use.
    assert_eq!(
        unsafe { ratecard_check(bad, &cr.r, SEC, d.as_mut_ptr()) },
        RATECARD_INVALID_ARGUMENT
    );
    // SAFETY: our handle, freed once.
    unsafe { ratecard_limiter_free(c) };
}

#[test]
fn the_default_configuration_reads_back_as_written() {
    let c = c_limiter(64);
    let mut got = default_config();
    got.capacity = 0;
    // SAFETY: live handle, valid out-pointer.
    assert_eq!(unsafe { ratecard_limiter_config(c, &mut got) }, RATECARD_OK);
    let want = default_config();
    assert_eq!(got.unknown_kind, RATECARD_KIND_ANY);
    assert_eq!(
        (
            got.unknown_kind,
            got.policy,
            got.algorithm,
            got.flags,
            got.ipv6_prefix_len
        ),
        (
            want.unknown_kind,
            want.policy,
            want.algorithm,
            want.flags,
            want.ipv6_prefix_len
        )
    );
    assert_eq!(got.capacity, 64);
    assert_eq!(got.rules_len, CLERK.len());
    // SAFETY: our handle, freed once.
    unsafe { ratecard_limiter_free(c) };
}

#[test]
fn unknown_config_flags_are_refused_and_fold_case_applies() {
    let mut c = default_config();
    c.flags = 1 << 7;
    let mut l = ptr::null_mut();
    // SAFETY: valid config and out-pointer.
    assert_eq!(
        unsafe { ratecard_limiter_new(&c, &mut l) },
        RATECARD_INVALID_ARGUMENT
    );
    c.flags = RATECARD_CONFIG_FOLD_CASE;
    // SAFETY: as above.
    assert_eq!(unsafe { ratecard_limiter_new(&c, &mut l) }, RATECARD_OK);
    let r = Request::new(Api::Frontend, b"POST", b"/V1/Client/SIGN_INS").ip([10, 0, 0, 4]);
    let cr = c_request(&r);
    assert_eq!(c_check(l, &cr.r, SEC).rule, 0, "fapi.sign_ins.create");
    // SAFETY: our handle, freed once.
    unsafe { ratecard_limiter_free(l) };
}

#[test]
fn a_refused_request_is_counted_as_an_error() {
    let c = c_limiter(64);
    let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins");
    let mut cr = c_request(&r);
    let three = [1u8, 2, 3];
    cr.r.client_ip = three.as_ptr();
    cr.r.client_ip_len = 3;
    let mut d = std::mem::MaybeUninit::<ratecard_decision>::uninit();
    // SAFETY: valid pointers; the IP length is what is refused.
    assert_eq!(
        unsafe { ratecard_check(c, &cr.r, SEC, d.as_mut_ptr()) },
        RATECARD_INVALID_IP
    );
    let mut s = std::mem::MaybeUninit::<ratecard_stats>::uninit();
    // SAFETY: live handle, valid out-pointer.
    assert_eq!(
        unsafe { ratecard_limiter_stats(c, s.as_mut_ptr()) },
        RATECARD_OK
    );
    // SAFETY: written on RATECARD_OK.
    assert_eq!(unsafe { s.assume_init() }.errors, 1);
    // SAFETY: our handle, freed once.
    unsafe { ratecard_limiter_free(c) };
}

#[test]
fn rule_info_reads_clerks_table_from_the_library() {
    let c = c_limiter(64);
    let mut info = std::mem::MaybeUninit::<ratecard_rule_info>::uninit();
    for (i, rule) in CLERK.rules().iter().enumerate() {
        // SAFETY: live handle, valid out-pointer.
        assert_eq!(
            unsafe { ratecard_limiter_rule_info(c, i as u32, info.as_mut_ptr()) },
            RATECARD_OK
        );
        // SAFETY: written on RATECARD_OK.
        let info = unsafe { info.assume_init_ref() };
        assert_eq!(
            (info.limit, info.period_ns, info.api),
            (rule.quota.limit, rule.quota.period.0, rule.api as u32)
        );
    }
    // SAFETY: as above.
    assert_eq!(
        unsafe { ratecard_limiter_rule_info(c, CLERK.len() as u32, info.as_mut_ptr()) },
        RATECARD_UNKNOWN_RULE
    );
    // SAFETY: our handle, freed once.
    unsafe { ratecard_limiter_free(c) };
}

#[test]
fn version_is_the_crate_version() {
    // SAFETY: static NUL-terminated text.
    let v = unsafe { CStr::from_ptr(ratecard_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn ip_parse_writes_4_or_16_bytes_within_the_capacity_given() {
    let cases: &[(&str, Option<&[u8]>)] = &[
        ("203.0.113.9", Some(&[203, 0, 113, 9])),
        ("::ffff:203.0.113.9", Some(&[203, 0, 113, 9])),
        ("[::ffff:203.0.113.9]", Some(&[203, 0, 113, 9])),
        (
            "2001:db8::1",
            Some(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ),
        (
            "[::1]",
            Some(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ),
        ("\t10.1.2.3 \n", Some(&[10, 1, 2, 3])),
        ("[10.1.2.3", None),
        ("010.1.2.3", None),
        ("::1]", None),
        ("localhost", None),
    ];
    for (text, want) in cases {
        let mut out = [0xEEu8; 16];
        let mut n = 99usize;
        // SAFETY: valid text, 16-byte buffer, out-pointer.
        let s = unsafe {
            ratecard_ip_parse(
                text.as_ptr(),
                text.len(),
                out.as_mut_ptr(),
                out.len(),
                &mut n,
            )
        };
        match want {
            Some(bytes) => {
                assert_eq!(s, RATECARD_OK, "{text}");
                assert_eq!(&out[..n], *bytes, "{text}");
                // One byte short: the length needed, nothing written.
                let mut short = [0xEEu8; 16];
                let mut need = 0usize;
                // SAFETY: as above, with a smaller capacity.
                let s = unsafe {
                    ratecard_ip_parse(
                        text.as_ptr(),
                        text.len(),
                        short.as_mut_ptr(),
                        n - 1,
                        &mut need,
                    )
                };
                assert_eq!((s, need, short), (RATECARD_BUFFER_TOO_SHORT, n, [0xEE; 16]));
            }
            None => {
                assert_eq!(s, RATECARD_INVALID_IP_TEXT, "{text}");
                assert_eq!((n, out), (99, [0xEE; 16]), "{text}");
            }
        }
    }
}

fn metrics_of(zones: &[ratecard_metrics_zone]) -> (ratecard_status, Vec<u8>) {
    let mut need = 0usize;
    // SAFETY: valid zones; (NULL, 0) asks for the length.
    let s = unsafe {
        ratecard_write_metrics(zones.as_ptr(), zones.len(), ptr::null_mut(), 0, &mut need)
    };
    assert_eq!(s, RATECARD_BUFFER_TOO_SHORT);
    let mut buf = vec![0u8; need];
    let mut n = 0usize;
    // SAFETY: a buffer of the length needed.
    let s = unsafe {
        ratecard_write_metrics(
            zones.as_ptr(),
            zones.len(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut n,
        )
    };
    buf.truncate(n);
    (s, buf)
}

#[test]
fn metrics_of_several_zones_are_written_in_one_page() {
    let (a, b) = (c_limiter(64), c_limiter(128));
    let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([10, 0, 0, 9]);
    let cr = c_request(&r);
    for _ in 0..6 {
        c_check(a, &cr.r, SEC);
    }
    let zone = |l, name: &'static str| ratecard_metrics_zone {
        limiter: l,
        name: name.as_ptr(),
        name_len: name.len(),
    };
    let (s, page) = metrics_of(&[zone(a, "front"), zone(b, "back")]);
    assert_eq!(s, RATECARD_OK);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains(
        "ratecard_decisions_total{zone=\"front\",rule=\"fapi.sign_ins.create\",outcome=\"limited\"} 1\n"
    ));
    assert!(page.contains("ratecard_table_slots{zone=\"back\"} 128\n"));
    let bad = [ratecard_metrics_zone {
        limiter: a,
        name: b"\xff".as_ptr(),
        name_len: 1,
    }];
    let mut n = 0usize;
    // SAFETY: valid pointers; the name is what is refused.
    assert_eq!(
        unsafe { ratecard_write_metrics(bad.as_ptr(), 1, ptr::null_mut(), 0, &mut n) },
        RATECARD_INVALID_ARGUMENT
    );
    // SAFETY: our handles, freed once.
    unsafe {
        ratecard_limiter_free(a);
        ratecard_limiter_free(b);
    }
}

#[test]
#[ignore = "needs promtool (Debian: prometheus); run by scripts/test.sh"]
fn metrics_pass_promtool_check_metrics() {
    use std::io::Write;
    let l = c_limiter(64);
    let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([10, 0, 0, 9]);
    let cr = c_request(&r);
    c_check(l, &cr.r, SEC);
    let name = "zone \"with\" quotes\\";
    let zones = [ratecard_metrics_zone {
        limiter: l,
        name: name.as_ptr(),
        name_len: name.len(),
    }];
    let (s, page) = metrics_of(&zones);
    assert_eq!(s, RATECARD_OK);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    child.stdin.take().unwrap().write_all(&page).unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
    // SAFETY: our handle, freed once.
    unsafe { ratecard_limiter_free(l) };
}
