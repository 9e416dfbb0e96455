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
    for verb in ["dev", "ingest", "subscriptions", "delivery", "log", "tenant", "endpoint", "publish"] {
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
    // The log verbs under their own name, and under the deprecated one.
    for group in [&["log"][..], &["delivery"][..]] {
        let text = help(group);
        for verb in ["list", "get", "raw", "download", "replay"] {
            assert!(text.contains(verb), "{group:?} {verb}");
        }
        assert!(help(&[group[0], "list"]).contains("HOOKLINE_DELIVERY_URL"));
    }
    assert!(help(&[]).contains("deprecated spelling of `hookline log <verb>`"));
    // Former spellings show in --help, marked deprecated.
    assert!(help(&["stats"]).contains("Deprecated: the tenant id as a flag"));
    assert!(help(&["tenant", "list"]).contains("Deprecated: the former name of --settings-file"));
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

    // `--config` is global: after the subcommand too, as `--config=<file>`.
    let out = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["config", "show", "--json"])
        .arg(format!("--config={}", file.display()))
        .env_remove("HOOKLINE_NATS_URL")
        .env_remove("HOOKLINE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["HOOKLINE_NATS_URL"]["source"], "file");

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

/// `hookline <args>` with no inherited HOOKLINE_* variable, plus `env`.
fn run_clean(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookline"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HOOKLINE_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).envs(env.iter().copied()).output().unwrap()
}

/// The `HOOKLINE_*` names in `[env: ...]` of `hookline <role> --help`.
fn role_settings(role: &str) -> std::collections::BTreeSet<String> {
    let out = run_clean(&[role, "--help"], &[]);
    assert!(out.status.success(), "{role} --help: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    text.split("[env: ").skip(1).map(|rest| rest.split(['=', ']']).next().unwrap().to_owned()).collect()
}

#[test]
fn each_role_shows_exactly_the_settings_the_readme_says_it_uses() {
    const ROLES: [&str; 3] = ["ingest", "subscriptions", "delivery"];
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("\n## Configuration\n").nth(1).unwrap().split("\n## ").next().unwrap();
    let dev = role_settings("dev");
    let helps: Vec<_> = ROLES.iter().map(|r| (*r, role_settings(r))).collect();
    let mut rows = 0;
    for line in section.lines().filter(|l| l.starts_with("| `HOOKLINE_")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let var = cells[0].trim_start_matches("| ").trim_matches('`');
        let used_by = cells[3];
        if !dev.contains(var) || used_by == "everything" {
            continue; // read outside clap, a CLI setting, or the settings file itself
        }
        rows += 1;
        for (role, help) in &helps {
            let uses = used_by.starts_with("all services") || used_by.contains(&format!("`{role}`"));
            assert_eq!(
                help.contains(var),
                uses,
                "README says `{var}` is used by {used_by}; `hookline {role} --help` disagrees"
            );
        }
    }
    // dev runs every role, so it takes every service setting the README lists.
    assert!(rows >= 30, "only {rows} service settings found in README's table");
    for (role, help) in &helps {
        assert!(help.is_subset(&dev), "{role} takes settings dev does not: {:?}", help.difference(&dev));
    }
    let ingest = &helps[0].1;
    assert!(!ingest.contains("HOOKLINE_SMTP_URL") && !helps[1].1.contains("HOOKLINE_RETRY_SCHEDULE"));
}

#[test]
fn the_console_shows_exactly_its_settings_and_the_readme_agrees() {
    let console = role_settings("console");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("\n## Configuration\n").nth(1).unwrap().split("\n## ").next().unwrap();
    let mut said: std::collections::BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `HOOKLINE_"))
        .filter(|l| l.split(" | ").nth(3).is_some_and(|used_by| used_by.contains("`console`")))
        .map(|l| l.split(" | ").next().unwrap().trim_start_matches("| ").trim_matches('`').to_owned())
        .collect();
    // Every command takes the settings file.
    said.extend(["HOOKLINE_SETTINGS_FILE".to_owned(), "HOOKLINE_CONFIG".to_owned()]);
    assert_eq!(console, said, "`hookline console --help` against README's table");
    assert!(!console.contains("HOOKLINE_NATS_URL") && !console.contains("HOOKLINE_DATABASE_URL"));
}

#[test]
fn settings_of_other_roles_are_ignored_in_the_environment_and_the_file_but_refused_as_flags() {
    // Values that would stop the roles that use them. Neither role reads
    // them, so each gets as far as its first own check: the operator token.
    let nats = ("HOOKLINE_NATS_URL", "nats://127.0.0.1:1");
    let ingest = [
        ("HOOKLINE_RETRY_SCHEDULE", "1x"),
        ("HOOKLINE_DELIVERY_ALLOW_CIDRS", "not-a-cidr"),
        ("HOOKLINE_DNS_SERVERS", "x"),
        nats,
    ];
    let subscriptions = [
        ("HOOKLINE_RETRY_SCHEDULE", "1x"),
        ("HOOKLINE_TENANT_RATE", "lots"),
        ("HOOKLINE_REQUEST_TIMEOUT", "forever"),
        nats,
    ];
    for (role, env) in [("ingest", &ingest), ("subscriptions", &subscriptions)] {
        let out = run_clean(&[role], env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("HOOKLINE_OPERATOR_TOKEN: is required"), "`hookline {role}`: {err}");
    }
    let dir = std::env::temp_dir().join(format!("hookline-roles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hookline.toml");
    std::fs::write(&file, "retry_schedule = \"1x\"\nsmtp_url = \"bogus\"\nnats_url = \"nats://127.0.0.1:1\"\n")
        .unwrap();
    let out = run_clean(&["--config", file.to_str().unwrap(), "ingest"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HOOKLINE_OPERATOR_TOKEN: is required"), "a shared file: {err}");
    let _ = std::fs::remove_dir_all(&dir);

    let out = run_clean(&["ingest", "--retry-schedule", "0s"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--retry-schedule"));
}

#[test]
fn the_settings_file_has_a_name_of_its_own_and_the_former_one_still_works() {
    let dir = std::env::temp_dir().join(format!("hookline-settings-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (new, old) = (dir.join("new.toml"), dir.join("old.toml"));
    std::fs::write(&new, "nats_url = \"nats://10.0.0.1:4222\"\n").unwrap();
    std::fs::write(&old, "nats_url = \"nats://10.0.0.2:4222\"\n").unwrap();
    let (new, old) = (new.to_str().unwrap(), old.to_str().unwrap());
    let nats_url = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["config", "show", "--json"];
        all.extend_from_slice(args);
        let out = run_clean(&all, env);
        assert!(out.status.success(), "{args:?} {env:?}: {}", String::from_utf8_lossy(&out.stderr));
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(shown["HOOKLINE_NATS_URL"]["source"], "file", "{args:?} {env:?}");
        shown["HOOKLINE_NATS_URL"]["value"].as_str().unwrap().to_owned()
    };
    assert_eq!(nats_url(&["--settings-file", new], &[]), "nats://10.0.0.1:4222");
    assert_eq!(nats_url(&[], &[("HOOKLINE_SETTINGS_FILE", new)]), "nats://10.0.0.1:4222");
    assert_eq!(nats_url(&["--config", old], &[]), "nats://10.0.0.2:4222");
    assert_eq!(nats_url(&[], &[("HOOKLINE_CONFIG", old)]), "nats://10.0.0.2:4222");
    // The new name wins; a flag wins over a variable.
    assert_eq!(nats_url(&[], &[("HOOKLINE_SETTINGS_FILE", new), ("HOOKLINE_CONFIG", old)]), "nats://10.0.0.1:4222");
    assert_eq!(nats_url(&["--config", old, "--settings-file", new], &[]), "nats://10.0.0.1:4222");
    assert_eq!(nats_url(&["--config", old], &[("HOOKLINE_SETTINGS_FILE", new)]), "nats://10.0.0.2:4222");
    let _ = std::fs::remove_dir_all(&dir);
    let top = help(&[]).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(top.contains("--settings-file") && top.contains("Deprecated: the former name of --settings-file"), "{top}");
}

#[test]
fn config_show_for_one_role_shows_and_checks_what_that_role_takes() {
    let show = |role: &str, env: &[(&str, &str)]| run_clean(&["config", "show", "--json", "--role", role], env);
    let token = ("HOOKLINE_OPERATOR_TOKEN", "a-long-enough-operator-token");
    let out = show("ingest", &[token]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: std::collections::BTreeSet<String> = shown.as_object().unwrap().keys().cloned().collect();
    let mut expected = role_settings("ingest");
    expected.remove("HOOKLINE_CONFIG");
    expected.remove("HOOKLINE_SETTINGS_FILE");
    assert_eq!(keys, expected);
    // The role's own checks: a token outside dev, the ingest rate limit.
    let out = show("ingest", &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOOKLINE_OPERATOR_TOKEN: is required"));
    let out = show("ingest", &[token, ("HOOKLINE_TENANT_RATE", "-1")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOOKLINE_TENANT_RATE: must be a non-negative"));
    assert!(show("dev", &[]).status.success());
    // Without --role: every service setting, as before.
    let all = run_clean(&["config", "show", "--json"], &[]);
    let all: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert!(all.as_object().unwrap().len() > keys.len() && all.get("HOOKLINE_RETRY_SCHEDULE").is_some());
}
