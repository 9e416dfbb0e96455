//! The binary's command surface: every verb operators rely on is there.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hookline")).args(args).arg("--help").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn verbs_are_all_there() {
    let top = help(&[]);
    for verb in ["dev", "ingest", "subscriptions", "delivery", "tenant", "endpoint", "publish"] {
        assert!(top.contains(verb), "missing `{verb}` in:\n{top}");
    }
    let tenant = help(&["tenant"]);
    for verb in ["create", "get", "set"] {
        assert!(tenant.contains(verb), "tenant {verb}");
    }
    let endpoint = help(&["endpoint"]);
    for verb in ["create", "get", "list", "update", "delete", "secret", "rotate-secret"] {
        assert!(endpoint.contains(verb), "endpoint {verb}");
    }
    assert!(help(&["endpoint", "list"]).contains("--json"));
    let dev = help(&["dev"]);
    for key in [
        "HOOKLINE_NATS_URL",
        "HOOKLINE_DATABASE_URL",
        "HOOKLINE_GRPC_ADDR",
        "HOOKLINE_HTTP_ADDR",
        "HOOKLINE_RETRY_SCHEDULE",
    ] {
        assert!(dev.contains(key), "dev --help lacks {key}");
    }
}

#[test]
fn bad_settings_name_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .arg("delivery")
        .env("HOOKLINE_RETRY_SCHEDULE", "1x")
        .env("HOOKLINE_NATS_URL", "nats://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HOOKLINE_RETRY_SCHEDULE"), "{err}");
}
