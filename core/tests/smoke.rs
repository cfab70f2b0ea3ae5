mod common;
use common::*;
use ratecard::{Api, Nanos, Request};

#[test]
fn smoke() {
    let l = clerk();
    let ip = [10, 0, 0, 1];
    let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(&ip);
    for i in 0..5 {
        let d = l.check(&r, Nanos(SEC)).unwrap();
        assert!(d.allowed, "{i} {d:?}");
    }
    let d = l.check(&r, Nanos(SEC)).unwrap();
    assert!(!d.allowed, "{d:?}");
    println!("{d:?}");
}
