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

#[test]
fn layered_configuration_file_then_env_then_flags() {
    let dir = std::env::temp_dir().join(format!("hookline-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hookline.toml");
    std::fs::write(&file, "nats_url = \"nats://10.9.9.9:4222\"\nack_wait = \"90s\"\nrequest_timeout = \"20s\"\ndatabase_url = \"postgres://app:s3cret@db/hookline\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["--config"])
        .arg(&file)
        .args(["config", "show", "--json", "--request-timeout", "30s"])
        .env("HOOKLINE_ACK_WAIT", "75s")
        .env("HOOKLINE_METRICS_TOKEN", "metrics-s3cret")
        .env("HOOKLINE_TLS_KEY", "/etc/hookline/tls/server.key")
        .env_remove("HOOKLINE_NATS_URL")
        .env_remove("HOOKLINE_REQUEST_TIMEOUT")
        .env_remove("HOOKLINE_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["HOOKLINE_NATS_URL"]["value"], "nats://10.9.9.9:4222");
    assert_eq!(shown["HOOKLINE_NATS_URL"]["source"], "file");
    assert_eq!(shown["HOOKLINE_ACK_WAIT"]["value"], "75s");
    assert_eq!(shown["HOOKLINE_ACK_WAIT"]["source"], "env");
    assert_eq!(shown["HOOKLINE_REQUEST_TIMEOUT"]["source"], "flag");
    assert_eq!(shown["HOOKLINE_GRPC_ADDR"]["source"], "default");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("s3cret") && text.contains("app:********@db"), "secrets masked: {text}");
    assert_eq!(shown["HOOKLINE_METRICS_TOKEN"]["value"], "********");
    assert_eq!(shown["HOOKLINE_TLS_KEY"]["value"], "/etc/hookline/tls/server.key", "a path is not a secret");

    std::fs::write(&file, "nats_ur = \"x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookline")).args(["--config"]).arg(&file).arg("dev").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `nats_ur`"));
    std::fs::write(&file, "ack_wait = \"5s\"\nrequest_timeout = \"15s\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["--config"])
        .arg(&file)
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("HOOKLINE_ACK_WAIT: must be at least 1s longer than HOOKLINE_REQUEST_TIMEOUT")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_show_tells_whether_authentication_is_off_and_masks_the_tokens() {
    let show = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookline"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HOOKLINE_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["config", "show", "--json"]).envs(env.iter().copied()).output().unwrap()
    };
    let out = show(&[("HOOKLINE_ALLOW_UNAUTHENTICATED", "true")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["HOOKLINE_ALLOW_UNAUTHENTICATED"]["value"], "true");
    assert_eq!(shown["HOOKLINE_ALLOW_UNAUTHENTICATED"]["source"], "env");

    let out = show(&[
        ("HOOKLINE_OPERATOR_TOKEN", "current-operator-token-s3cret"),
        ("HOOKLINE_OPERATOR_TOKEN_PREVIOUS", "former-operator-token-s3cret"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !text.contains("s3cret"), "tokens masked: {text}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["HOOKLINE_ALLOW_UNAUTHENTICATED"]["value"], "false");
    assert_eq!(shown["HOOKLINE_ALLOW_UNAUTHENTICATED"]["source"], "default");
    assert_eq!(shown["HOOKLINE_OPERATOR_TOKEN_PREVIOUS"]["value"], "********");

    let out = show(&[("HOOKLINE_OPERATOR_TOKEN", "too-short")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOOKLINE_OPERATOR_TOKEN: must be at least 16 characters"));
    let out = show(&[("HOOKLINE_ALLOW_UNAUTHENTICATED", "maybe")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("allow-unauthenticated"), "the bad value names the setting");
}
