//! Layered configuration: built-in defaults, then a TOML file
//! (`--settings-file <path>` or HOOKLINE_SETTINGS_FILE; the deprecated
//! `--config` or HOOKLINE_CONFIG, which clashes with the config stream's
//! name, is accepted too), then
//! `HOOKLINE_*` environment variables, then command-line flags. File keys
//! are the environment names without the prefix, in lower case (`nats_url =
//! "nats://..."` for `HOOKLINE_NATS_URL`), so one table documents both.
//!
//! The file is read before clap parses the command line, and each of its
//! values becomes the default of the args whose environment variable is
//! unset ([`SettingsFile::apply`]); clap then parses and validates every
//! layer the same way. The process environment is never written: other
//! threads (and the libc resolver) may read it at any time, and
//! `set_var` is unsound once they exist. `config show` tells a file value
//! from a built-in default by the keys the file supplied.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
};

use clap::{Args, CommandFactory};

use crate::{cli::ClientArgs, serve::Role, settings::ServiceArgs};

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

/// Why the settings file cannot be used; each message names the file and,
/// where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: not valid TOML: {source}")]
    Toml { path: String, source: toml::de::Error },
    #[error(
        "{path}: unknown key `{key}`; keys are the HOOKLINE_* settings in lower case without the prefix, e.g. nats_url"
    )]
    UnknownKey { path: String, key: String },
    #[error("{path}: key `{key}` must be a string, number or boolean, not {kind}")]
    NotAValue { path: String, key: String, kind: &'static str },
}

/// The file layer: the settings file's values by environment name.
#[derive(Debug, Default)]
pub struct SettingsFile {
    values: BTreeMap<String, String>,
}

impl SettingsFile {
    /// The file's path, found by a lenient parse of the command line
    /// (errors and help are left to the real one): a flag before a
    /// variable, and the current name (`--settings-file`,
    /// HOOKLINE_SETTINGS_FILE) before the deprecated one (`--config`,
    /// HOOKLINE_CONFIG).
    fn path() -> Option<OsString> {
        fn lenient(cmd: clap::Command) -> clap::Command {
            cmd.ignore_errors(true).disable_help_flag(true).disable_version_flag(true).mut_subcommands(lenient)
        }
        const IDS: [(&str, &str); 2] = [("settings_file", "HOOKLINE_SETTINGS_FILE"), ("config", "HOOKLINE_CONFIG")];
        let matches = lenient(crate::Cli::command()).try_get_matches().ok();
        let flag = |id: &str| {
            let m = matches.as_ref()?;
            (m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
                .then(|| m.get_raw(id).and_then(|mut raw| raw.next()).map(ToOwned::to_owned))
                .flatten()
        };
        IDS.iter().find_map(|(id, _)| flag(id)).or_else(|| IDS.iter().find_map(|(_, env)| std::env::var_os(env)))
    }

    /// Read the file named on the command line or in the environment;
    /// without one, the layer is empty.
    ///
    /// # Errors
    /// For an unreadable file, a key Hookline does not know, or a value that
    /// is not a string, number or boolean.
    pub fn load() -> Result<Self, FileError> {
        let Some(path) = Self::path() else { return Ok(Self::default()) };
        let path = path.to_string_lossy().into_owned();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) => return Err(FileError::Read { path, source }),
        };
        let table: toml::Table = match text.parse() {
            Ok(table) => table,
            Err(source) => return Err(FileError::Toml { path, source }),
        };
        let known = known_env();
        let mut values = BTreeMap::new();
        for (key, value) in table {
            let env = format!("HOOKLINE_{}", key.to_ascii_uppercase());
            if !known.contains(&env) || key.to_ascii_lowercase() != key {
                return Err(FileError::UnknownKey { path, key });
            }
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => return Err(FileError::NotAValue { path, key, kind: other.type_str() }),
            };
            values.insert(env, value);
        }
        Ok(Self { values })
    }

    /// The file's value for `env`, when the environment does not set it.
    fn value(&self, env: &str) -> Option<&str> {
        if std::env::var_os(env).is_some() { None } else { self.values.get(env).map(String::as_str) }
    }

    /// A setting the binary reads itself (`HOOKLINE_LOG`...): the
    /// environment, else the file.
    pub fn lookup(&self, env: &str) -> Option<String> {
        match std::env::var_os(env) {
            Some(v) => v.into_string().ok(),
            None => self.values.get(env).cloned(),
        }
    }

    /// The keys whose file value is in effect (the environment does not set
    /// them): what `config show` reports as `file` rather than `default`.
    pub fn applied(&self) -> Vec<String> {
        self.values.keys().filter(|env| self.value(env).is_some()).cloned().collect()
    }

    /// `cmd` with the file's values as defaults of every arg, in every
    /// subcommand, whose environment variable is unset. Secrets stay out of
    /// `--help`.
    pub fn apply(&self, cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|arg| {
            let Some(env) = arg.get_env().map(|e| e.to_string_lossy().into_owned()) else { return arg };
            let value = match self.value(&env) {
                Some(v) => v,
                // The CLI sends HOOKLINE_OPERATOR_TOKEN when HOOKLINE_TOKEN
                // is unset; from the file as from the environment.
                None if env == "HOOKLINE_TOKEN" && !self.values.contains_key(&env) => {
                    match self.value("HOOKLINE_OPERATOR_TOKEN") {
                        Some(v) => v,
                        None => return arg,
                    }
                }
                None => return arg,
            };
            let secret = arg.is_hide_env_values_set();
            // clap keeps defaults as `&'static str`; one small string per
            // setting, once per process.
            let value: &'static str = Box::leak(value.to_owned().into_boxed_str());
            arg.default_value(value).hide_default_value(secret)
        })
        .mut_subcommands(|sub| self.apply(sub))
    }
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
            "note: {arg} is set by the flag, the {env} environment variable or the `{key}` key of the settings file"
        );
    }
    err
}

/// The environment names of the settings `hookline <role>` takes.
fn role_env(role: Role) -> BTreeSet<String> {
    let cli = crate::Cli::command();
    let cmd = cli.find_subcommand(role.name()).expect("every role is a subcommand");
    cmd.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect()
}

/// `hookline config show`: every service setting with its effective value
/// and where it came from; with `role`, only the settings that role takes,
/// checked as that role checks them at start.
pub fn show(
    service: &ServiceArgs,
    role: Option<Role>,
    json: bool,
    matches: Option<&clap::ArgMatches>,
    from_file: &[String],
) -> std::process::ExitCode {
    let cmd = ServiceArgs::augment_args(clap::Command::new("service"));
    let only = role.map(role_env);
    let mut rows = Vec::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(env) = arg.get_env().map(|e| e.to_string_lossy().into_owned()) else { continue };
        if only.as_ref().is_some_and(|only| !only.contains(&env)) {
            continue;
        }
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
            Some(clap::parser::ValueSource::EnvVariable) => "env",
            Some(clap::parser::ValueSource::DefaultValue) if from_file.contains(&env) => "file",
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
    // Without a role: the delivery settings and the token's own rules
    // (whether one is required depends on the role). With one: what that
    // role checks before it starts.
    let dev = role == Some(Role::Dev);
    let runs = |part: Role| role.is_none_or(|r| r.has(part));
    let checked = || -> anyhow::Result<()> {
        hookline_bus::NatsServers::parse(&service.common.nats_url)?;
        if runs(Role::Delivery) {
            service.delivery.settings(&service.common, &service.address, dev, None)?;
        }
        service.common.operator_auth(role.is_none() || dev)?;
        if role.is_some_and(|r| r.has(Role::Ingest)) {
            service.ingest.tenant_rate()?;
        }
        Ok(())
    };
    // The first refusal's own message, as the service prints it.
    if let Err(e) = checked() {
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

    /// `hookline <role> --help` shows, and clap accepts, exactly these.
    #[test]
    fn each_role_takes_only_the_settings_of_the_parts_it_runs() {
        let takes = |role: Role, prefix: &str| role_env(role).iter().any(|e| e.starts_with(prefix));
        let smtp = "HOOKLINE_SMTP_";
        let (history, rate, allow) =
            ("HOOKLINE_CONFIG_SNAPSHOT_AFTER", "HOOKLINE_TENANT_RATE", "HOOKLINE_DELIVERY_ALLOW_CIDRS");
        assert!(!takes(Role::Ingest, smtp) && !takes(Role::Ingest, history) && !takes(Role::Ingest, allow));
        assert!(takes(Role::Ingest, rate) && takes(Role::Ingest, "HOOKLINE_NATS_URL"));
        assert!(!takes(Role::Subscriptions, smtp) && !takes(Role::Subscriptions, rate));
        assert!(takes(Role::Subscriptions, history) && takes(Role::Subscriptions, allow));
        assert!(takes(Role::Delivery, smtp) && takes(Role::Delivery, history) && !takes(Role::Delivery, rate));
        assert!(!takes(Role::Delivery, "HOOKLINE_CONSOLE_"));
        for part in [smtp, history, rate, allow, "HOOKLINE_CONSOLE_"] {
            assert!(takes(Role::Dev, part), "dev runs every part, so it takes {part}");
        }
    }

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

    fn file(pairs: &[(&str, &str)]) -> SettingsFile {
        SettingsFile { values: pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
    }

    #[test]
    fn file_values_are_defaults_under_the_flags_in_every_subcommand() {
        use clap::{Arg, Command, parser::ValueSource};
        // Names no environment sets, so only the file and the flags count.
        let cmd = Command::new("t")
            .arg(Arg::new("a").long("a").env("HOOKLINE_TEST_ONLY_A").default_value("builtin"))
            .subcommand(
                Command::new("sub")
                    .arg(Arg::new("b").long("b").env("HOOKLINE_TEST_ONLY_B").hide_env_values(true))
                    .arg(Arg::new("c").long("c").env("HOOKLINE_TEST_ONLY_C").default_value("builtin")),
            );
        let layer = file(&[("HOOKLINE_TEST_ONLY_A", "file-a"), ("HOOKLINE_TEST_ONLY_B", "file-secret")]);
        let mut cmd = layer.apply(cmd);
        let m = cmd.clone().try_get_matches_from(["t", "sub", "--c", "flag-c"]).unwrap();
        assert_eq!(m.get_one::<String>("a").unwrap(), "file-a");
        assert_eq!(m.value_source("a"), Some(ValueSource::DefaultValue));
        let sub = m.subcommand_matches("sub").unwrap();
        assert_eq!(sub.get_one::<String>("b").unwrap(), "file-secret");
        assert_eq!(sub.get_one::<String>("c").unwrap(), "flag-c");
        let m = cmd.clone().try_get_matches_from(["t", "--a", "flag-a"]).unwrap();
        assert_eq!(m.get_one::<String>("a").unwrap(), "flag-a");
        let help = cmd.find_subcommand_mut("sub").unwrap().render_long_help().to_string();
        assert!(!help.contains("file-secret"), "secrets stay out of help: {help}");
        assert_eq!(layer.applied(), ["HOOKLINE_TEST_ONLY_A", "HOOKLINE_TEST_ONLY_B"]);
    }

    #[test]
    fn the_file_operator_token_is_the_cli_token_when_nothing_else_sets_one() {
        if std::env::var_os("HOOKLINE_TOKEN").is_some() || std::env::var_os("HOOKLINE_OPERATOR_TOKEN").is_some() {
            return; // the environment would win, as it should
        }
        let cmd = || clap::Command::new("t").arg(clap::Arg::new("token").long("token").env("HOOKLINE_TOKEN"));
        let token = |layer: &SettingsFile| {
            layer.apply(cmd()).try_get_matches_from(["t"]).unwrap().get_one::<String>("token").cloned()
        };
        assert_eq!(token(&file(&[("HOOKLINE_OPERATOR_TOKEN", "op")])).as_deref(), Some("op"));
        let both = file(&[("HOOKLINE_OPERATOR_TOKEN", "op"), ("HOOKLINE_TOKEN", "tok")]);
        assert_eq!(token(&both).as_deref(), Some("tok"));
        assert_eq!(token(&file(&[])), None);
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
