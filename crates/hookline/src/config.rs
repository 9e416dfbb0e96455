//! Layered configuration: built-in defaults, then a TOML file (`--config
//! <path>` or `HOOKLINE_CONFIG`), then `HOOKLINE_*` environment variables,
//! then command-line flags. File keys are the environment names without
//! the prefix, in lower case (`nats_url = "nats://..."` for
//! `HOOKLINE_NATS_URL`), so one table documents both.
//!
//! The file is read before the runtime starts and its values become
//! environment variables for the keys the environment does not set, so clap
//! validates every layer the same way.

use std::collections::BTreeSet;

use clap::{Args, CommandFactory};

use crate::{cli::ClientArgs, settings::ServiceArgs};

/// Keys outside clap's arguments that the binary reads itself.
const EXTRA_KEYS: [&str; 3] = ["HOOKLINE_LOG", "HOOKLINE_LOG_FORMAT", "HOOKLINE_OTLP_ENDPOINT"];

/// Every `HOOKLINE_*` name a layer may set.
pub fn known_env() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let service = ServiceArgs::augment_args(clap::Command::new("service"));
    let client = ClientArgs::augment_args(clap::Command::new("client"));
    for cmd in [service, client, crate::Cli::command()] {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                names.insert(env.to_string_lossy().into_owned());
            }
        }
    }
    names.extend(EXTRA_KEYS.map(String::from));
    names
}

/// The `--config` path from the command line, else `HOOKLINE_CONFIG`.
fn config_path() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    for (i, a) in args.iter().enumerate() {
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(p.to_owned());
        }
        if a == "--config" {
            return args.get(i + 1).cloned();
        }
    }
    std::env::var("HOOKLINE_CONFIG").ok()
}

/// Apply the file layer. Returns the keys it set, for `config show`.
///
/// # Errors
/// A message naming the file and the key, for an unreadable file, a key
/// Hookline does not know, or a value that is not a string, number or boolean.
pub fn apply_file() -> Result<Vec<String>, String> {
    let Some(path) = config_path() else { return Ok(Vec::new()) };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let table: toml::Table = text.parse().map_err(|e| format!("{path}: not valid TOML: {e}"))?;
    let known = known_env();
    let mut set = Vec::new();
    for (key, value) in table {
        let env = format!("HOOKLINE_{}", key.to_ascii_uppercase());
        if !known.contains(&env) || key.to_ascii_lowercase() != key {
            return Err(format!(
                "{path}: unknown key `{key}`; keys are the HOOKLINE_* settings in lower case without the prefix, e.g. nats_url"
            ));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "{path}: key `{key}` must be a string, number or boolean, not {}",
                    other.type_str()
                ));
            }
        };
        if std::env::var_os(&env).is_none() {
            // SAFETY: called from `main` before the runtime or any other thread starts.
            unsafe { std::env::set_var(&env, value) };
            set.push(env);
        }
    }
    Ok(set)
}

/// Name the setting behind a clap value error: `--ack-wait` is HOOKLINE_ACK_WAIT.
pub fn explain(err: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(err.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return err;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else { return err };
    let long = arg.split_whitespace().next().unwrap_or_default().trim_start_matches("--").to_owned();
    let env = format!("HOOKLINE_{}", long.replace('-', "_").to_ascii_uppercase());
    if known_env().contains(&env) {
        let key = env.trim_start_matches("HOOKLINE_").to_ascii_lowercase();
        eprintln!(
            "note: {arg} is set by the flag, the {env} environment variable or the `{key}` key of the config file"
        );
    }
    err
}

/// `hookline config show`: every service setting with its effective value
/// and where it came from.
pub fn show(
    service: &ServiceArgs,
    json: bool,
    matches: Option<&clap::ArgMatches>,
    from_file: &[String],
) -> std::process::ExitCode {
    let cmd = ServiceArgs::augment_args(clap::Command::new("service"));
    let mut rows = Vec::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(env) = arg.get_env().map(|e| e.to_string_lossy().into_owned()) else { continue };
        // The value as given (flag, environment, file or default), not as parsed.
        let value = matches
            .and_then(|m| m.get_raw(id))
            .and_then(|mut raw| raw.next())
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        let value = if id.contains("url") {
            // HOOKLINE_NATS_URL may list several servers, each with its password.
            mask_url(&value)
        } else if arg.is_hide_env_values_set() && !value.is_empty() {
            // The settings that hide their values in `--help` are the secrets.
            "********".to_owned()
        } else {
            value
        };
        let source = match matches.and_then(|m| m.value_source(id)) {
            Some(clap::parser::ValueSource::CommandLine) => "flag",
            Some(clap::parser::ValueSource::EnvVariable) if from_file.contains(&env) => "file",
            Some(clap::parser::ValueSource::EnvVariable) => "env",
            _ => "default",
        };
        rows.push((env, value, source));
    }
    if json {
        let obj: serde_json::Map<String, serde_json::Value> =
            rows.iter().map(|(k, v, s)| (k.clone(), serde_json::json!({"value": v, "source": s}))).collect();
        println!("{}", serde_json::to_string_pretty(&obj).expect("JSON prints"));
    } else {
        for (k, v, s) in rows {
            println!("{k:<34} {v:<50} ({s})");
        }
    }
    // The token's own rules; whether one is required depends on the role.
    let servers = hookline_bus::NatsServers::parse(&service.common.nats_url).map(drop).map_err(|e| e.to_string());
    if let Err(e) = servers
        .and_then(|_| service.delivery.settings(&service.common, &service.address, false, None))
        .and_then(|_| service.common.operator_auth(true).map(drop))
    {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

/// Mask the password of a URL such as `postgres://user:secret@host/db`,
/// or of every URL of a comma-separated list (HOOKLINE_NATS_URL).
pub fn mask_url(url: &str) -> String {
    hookline_bus::mask_url_list(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_only() {
        assert_eq!(mask_url("postgres://app:s3cret@db:5432/hookline"), "postgres://app:********@db:5432/hookline");
        assert_eq!(mask_url("smtp://relay:587"), "smtp://relay:587");
        assert_eq!(mask_url("postgres://postgres@127.0.0.1/hookline"), "postgres://postgres@127.0.0.1/hookline");
    }

    #[test]
    fn every_url_of_a_nats_server_list_is_masked() {
        assert_eq!(
            mask_url("nats://h:pw1@a:4222,nats://h:pw1@b:4222"),
            "nats://h:********@a:4222,nats://h:********@b:4222"
        );
    }

    #[test]
    fn stream_replicas_is_a_known_key() {
        assert!(known_env().contains("HOOKLINE_STREAM_REPLICAS"));
    }

    #[test]
    fn every_setting_is_a_known_key() {
        let known = known_env();
        for k in ["HOOKLINE_NATS_URL", "HOOKLINE_ACK_WAIT", "HOOKLINE_SMTP_URL", "HOOKLINE_LOG", "HOOKLINE_INGEST_URL"]
        {
            assert!(known.contains(k), "{k}");
        }
    }
}
