//! The binary's command line: a settings file takes effect, bad settings
//! stop it before it listens.

mod common;

use std::process::Command;

use common::*;

#[test]
fn bad_settings_exit_with_status_2_and_the_usage() {
    for args in [
        &["--capacity", "0"][..],
        &["--api", "sideways"],
        &["--bogus", "1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ratecard-rls"))
            .args(args)
            .output()
            .expect("run ratecard-rls");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("usage: ratecard-rls"), "{stderr}");
        assert!(out.stdout.is_empty(), "nothing listened");
    }
}

#[test]
fn redis_without_a_shared_seed_refuses_to_start_and_says_why() {
    let out = Command::new(env!("CARGO_BIN_EXE_ratecard-rls"))
        .args(["--listen", "127.0.0.1:0", "--redis", "127.0.0.1:6379"])
        .output()
        .expect("run ratecard-rls");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--redis needs --seed or --seed-file"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing listened");
}

#[tokio::test]
async fn a_settings_file_sets_the_domain_and_the_default_api() {
    let dir = std::env::temp_dir().join(format!("ratecard-rls-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("rls.conf");
    std::fs::write(&conf, "# an edge\ndomain = edge\napi = backend\n").unwrap();
    let service = Service::start(&["--config", conf.to_str().unwrap()]);
    let mut client = service.client().await;

    let me = HttpRequest::backend("GET", "/v1/users/me", "sk_live_cli");
    let mut req = request(&me);
    req.domain = "edge".into();
    req.descriptors[0].entries.retain(|e| e.key != "api");
    let r = should(&mut client, req.clone()).await;
    assert_eq!(rule_of(&r), Some("bapi.instance.production"));

    req.domain = DOMAIN.into();
    let refused = client.should_rate_limit(req).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("domain"), "{refused:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
