//! `docker-compose.yml` checked against the real `hookline` binary and the
//! files it mounts, without a Docker engine: every Hookline container runs
//! a real service role (one that listens: the services, or the console),
//! sets only variables that role accepts (with values it accepts), publishes
//! the ports it listens on, is health-checked where its role answers
//! (`/readyz` on a service's HTTP port, `/healthz` on the console's), and,
//! when its role serves metrics, is scraped by Prometheus; Grafana's
//! provisioning is where its mounts put it; the Dockerfile's build stage runs `cargo build` for
//! the `hookline` binary and its ENTRYPOINT enters it. (That the stage's
//! command really builds that binary is `scripts/dockerfile-build.sh`,
//! which CI runs: it needs cargo, so it cannot run inside `cargo test`.)
//!
//! The compose file and the files under `deploy/` are read with
//! `serde_yaml_ng`, with merge keys (`<<: *name`) resolved, into the small
//! [`Yaml`] tree the checks walk. A file the library cannot read (a tab in
//! the indentation, a key given twice, an unknown alias) fails here with its
//! name, line and column instead of passing unchecked.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
};

// ------------------------------------------------------------------ YAML

/// A YAML document as the checks see it: every scalar as text.
#[derive(Debug, Clone)]
enum Yaml {
    /// A scalar as text: strings as written, numbers and booleans as YAML
    /// prints them, null (`key:` with nothing after it) as "".
    Scalar(String),
    Map(Vec<(String, Yaml)>),
    List(Vec<Yaml>),
}

impl Yaml {
    /// `text`, from `file`, read by serde_yaml_ng with its merge keys applied
    /// (explicit keys win over merged ones); panics naming the file and the
    /// line on anything the library refuses.
    fn parse(file: &str, text: &str) -> Yaml {
        let mut value: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{file}: not YAML compose can read: {e}"));
        value.apply_merge().unwrap_or_else(|e| panic!("{file}: merge keys (`<<`): {e}"));
        Yaml::from_value(file, value)
    }

    fn from_value(file: &str, value: serde_yaml_ng::Value) -> Yaml {
        use serde_yaml_ng::Value;
        match value {
            Value::Null => Yaml::Scalar(String::new()),
            Value::Bool(b) => Yaml::Scalar(b.to_string()),
            Value::Number(n) => Yaml::Scalar(n.to_string()),
            Value::String(s) => Yaml::Scalar(s),
            Value::Sequence(items) => Yaml::List(items.into_iter().map(|i| Yaml::from_value(file, i)).collect()),
            Value::Mapping(entries) => Yaml::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let key = match Yaml::from_value(file, k) {
                            Yaml::Scalar(key) => key,
                            other => panic!("{file}: a mapping key is not a scalar: {other:?}"),
                        };
                        (key, Yaml::from_value(file, v))
                    })
                    .collect(),
            ),
            Value::Tagged(t) => panic!("{file}: tagged value `{}` (compose uses no YAML tags)", t.tag),
        }
    }

    fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn entries(&self) -> &[(String, Yaml)] {
        match self {
            Yaml::Map(entries) => entries,
            _ => &[],
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Yaml::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn items(&self) -> &[Yaml] {
        match self {
            Yaml::List(items) => items,
            _ => &[],
        }
    }

    /// A list of scalars (block `- a` or flow `[a, "b"]`) as strings.
    fn strings(&self) -> Option<Vec<String>> {
        match self {
            Yaml::List(items) => items.iter().map(|i| i.str().map(str::to_owned)).collect(),
            Yaml::Scalar(_) | Yaml::Map(_) => None,
        }
    }

    /// Mapping keys, or the scalars of a list (`depends_on` in either form).
    fn names(&self) -> Vec<String> {
        match self {
            Yaml::Map(entries) => entries.iter().map(|(k, _)| k.clone()).collect(),
            other => other.strings().unwrap_or_default(),
        }
    }
}

/// The `.env` file the compose header tells operators to generate.
const DOTENV: [(&str, &str); 1] = [("HOOKLINE_OPERATOR_TOKEN", "q3Jx0c1m7yH2vB9wLkT5pZ8rN4sD6fGaE1uI0oPjQ2M=")];

/// Compose's variable interpolation against [`DOTENV`]: `${NAME}`,
/// `${NAME:-default}` and `${NAME:?error}` (which fails the test, as it
/// stops `docker compose up`, when `.env` lacks the name).
fn interpolate(value: &str, what: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap_or_else(|| panic!("{what}: unclosed `${{` in `{value}`")) + start;
        let expr = &rest[start + 2..end];
        let (name, fallback) = match expr.find([':', '-', '?']) {
            Some(i) => (&expr[..i], Some(&expr[i..])),
            None => (expr, None),
        };
        let set = DOTENV.iter().find(|(k, _)| *k == name).map(|(_, v)| *v).filter(|v| !v.is_empty());
        match (set, fallback) {
            (Some(v), _) => out.push_str(v),
            (None, Some(f)) if f.starts_with(":?") || f.starts_with('?') => {
                panic!("{what}: `docker compose up` stops: {name} {}", f.trim_start_matches([':', '?']))
            }
            (None, Some(f)) => out.push_str(f.trim_start_matches([':', '-'])),
            (None, None) => {}
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

// ------------------------------------------------------------ the files

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

struct Compose {
    file: &'static str,
    text: String,
    doc: Yaml,
}

impl Compose {
    fn load(file: &'static str) -> Compose {
        let text = read(file);
        let doc = Yaml::parse(file, &text);
        Compose { file, text, doc }
    }

    /// docker-compose.yml: one container per service, one NATS server.
    fn get() -> &'static Compose {
        static C: OnceLock<Compose> = OnceLock::new();
        C.get_or_init(|| Compose::load("docker-compose.yml"))
    }

    /// docker-compose.cluster.yml: three NATS nodes, two containers per service.
    fn cluster() -> &'static Compose {
        static C: OnceLock<Compose> = OnceLock::new();
        C.get_or_init(|| Compose::load("docker-compose.cluster.yml"))
    }

    /// Both files, for the checks that hold for each.
    fn both() -> [&'static Compose; 2] {
        [Compose::get(), Compose::cluster()]
    }

    fn services(&self) -> &[(String, Yaml)] {
        self.doc.get("services").expect("docker-compose.yml has `services`").entries()
    }

    fn service(&self, name: &str) -> Option<&Yaml> {
        self.doc.get("services")?.get(name)
    }

    /// Services run from the image the Dockerfile builds: those with
    /// `build`, and those naming the same image.
    fn hookline(&self) -> Vec<(&str, Service<'_>)> {
        let built: BTreeSet<&str> = self
            .services()
            .iter()
            .filter(|(_, s)| s.get("build").is_some())
            .filter_map(|(_, s)| s.get("image").and_then(Yaml::str))
            .collect();
        let list: Vec<_> = self
            .services()
            .iter()
            .filter(|(_, s)| {
                s.get("build").is_some() || s.get("image").and_then(Yaml::str).is_some_and(|i| built.contains(i))
            })
            .map(|(n, s)| (n.as_str(), Service { name: n, yaml: s }))
            .collect();
        assert!(!list.is_empty(), "docker-compose.yml: no service is built from the Dockerfile (`build:`)");
        list
    }

    /// The first service whose image starts with `prefix`.
    fn by_image(&self, prefix: &str) -> Service<'_> {
        self.services()
            .iter()
            .find(|(_, s)| s.get("image").and_then(Yaml::str).is_some_and(|i| i.starts_with(prefix)))
            .map(|(n, s)| Service { name: n, yaml: s })
            .unwrap_or_else(|| panic!("docker-compose.yml: no service runs an image `{prefix}...`"))
    }
}

struct Service<'a> {
    name: &'a str,
    yaml: &'a Yaml,
}

impl Service<'_> {
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        match self.yaml.get("environment") {
            Some(Yaml::Map(entries)) => {
                for (k, v) in entries {
                    let v =
                        v.str().unwrap_or_else(|| panic!("service `{}`: environment `{k}` is not a scalar", self.name));
                    env.insert(k.clone(), interpolate(v, &format!("service `{}`: environment `{k}`", self.name)));
                }
            }
            Some(list @ Yaml::List(_)) => {
                for item in list.strings().unwrap_or_default() {
                    let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                    env.insert(k.to_owned(), v.to_owned());
                }
            }
            _ => {}
        }
        env
    }

    fn setting(&self, key: &str) -> String {
        self.env().remove(key).unwrap_or_else(|| panic!("service `{}`: environment `{key}` is not set", self.name))
    }

    fn addr(&self, key: &str) -> SocketAddr {
        let v = self.setting(key);
        v.parse()
            .unwrap_or_else(|_| panic!("service `{}`: environment `{key}`: `{v}` is not an address:port", self.name))
    }

    /// `ports` as (host port, container port), from `[ip:]host:container[/proto]` or `container`.
    fn ports(&self) -> Vec<(Option<u16>, u16)> {
        let list = self
            .yaml
            .get("ports")
            .map(|p| p.strings().unwrap_or_else(|| panic!("service `{}`: `ports` is not a list", self.name)));
        list.unwrap_or_default()
            .iter()
            .map(|p| {
                let spec = p.split('/').next().unwrap_or(p);
                let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
                let num = |s: &str| {
                    s.parse::<u16>()
                        .unwrap_or_else(|_| panic!("service `{}`: ports entry `{p}`: `{s}` is not a port", self.name))
                };
                (parts.get(1).map(|h| num(h)), num(parts[0]))
            })
            .collect()
    }

    /// Bind mounts as (host path relative to the compose file, container path).
    fn mounts(&self) -> Vec<(String, String)> {
        let list = self.yaml.get("volumes").and_then(Yaml::strings).unwrap_or_default();
        list.iter()
            .filter_map(|v| {
                let mut parts = v.split(':');
                let (host, container) = (parts.next()?, parts.next()?);
                (host.starts_with('.') || host.starts_with('/')).then(|| (host.to_owned(), container.to_owned()))
            })
            .collect()
    }

    /// The host file or directory behind `container_path`, through a bind mount of it or of a parent.
    fn host_path(&self, container_path: &str) -> Option<PathBuf> {
        self.mounts().into_iter().find_map(|(host, container)| {
            let rest = container_path.strip_prefix(container.trim_end_matches('/'))?;
            let base = root().join(&host);
            match rest {
                "" => Some(base),
                r if r.starts_with('/') => Some(base.join(r.trim_start_matches('/'))),
                _ => None,
            }
        })
    }

    fn depends_on(&self) -> Vec<String> {
        self.yaml.get("depends_on").map(Yaml::names).unwrap_or_default()
    }

    /// `hookline <role> --help` of this service's role.
    fn help(&self) -> &'static str {
        role_help(&self.role()).unwrap_or_else(|| {
            panic!(
                "service `{}`: command `{}`: `hookline {} --help` fails: not a subcommand",
                self.name,
                self.role(),
                self.role()
            )
        })
    }

    /// Whether this service's role reads `key`.
    fn accepts(&self, key: &str) -> bool {
        takes(self.help(), key)
    }

    /// The listen addresses of its role, each as set here.
    fn listens(&self) -> Vec<(&'static str, SocketAddr)> {
        LISTEN_ADDRS.iter().filter(|k| self.accepts(k)).map(|k| (*k, self.addr(k))).collect()
    }

    /// The setting whose port answers its health check, and the path asked.
    fn health(&self) -> (&'static str, &'static str) {
        HEALTH.iter().copied().find(|(key, _)| self.accepts(key)).unwrap_or_else(|| {
            panic!(
                "service `{}`: `hookline {}` takes none of {HEALTH:?}: nothing to health-check",
                self.name,
                self.role()
            )
        })
    }

    fn role(&self) -> String {
        let cmd = self.yaml.get("command").and_then(Yaml::strings);
        let cmd =
            cmd.unwrap_or_else(|| panic!("service `{}`: `command` must name the role, e.g. [\"delivery\"]", self.name));
        cmd.first().cloned().unwrap_or_else(|| panic!("service `{}`: `command` is empty", self.name))
    }

    fn healthcheck_url(&self) -> (String, u16, String) {
        let hc = self.yaml.get("healthcheck").unwrap_or_else(|| panic!("service `{}`: no `healthcheck`", self.name));
        let test = hc.get("test").and_then(Yaml::strings);
        let test = test.unwrap_or_else(|| panic!("service `{}`: `healthcheck.test` is not a list", self.name));
        let url = test.iter().find(|a| a.contains("://"));
        let url =
            url.unwrap_or_else(|| panic!("service `{}`: `healthcheck.test` requests no URL: {test:?}", self.name));
        let (host, port, path) =
            split_url(url).unwrap_or_else(|| panic!("service `{}`: healthcheck URL `{url}` has no port", self.name));
        (host, port, path)
    }
}

/// `scheme://[user@]host:port/path` as (host, port, path).
fn split_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.split_once("://")?.1;
    let (authority, path) = rest.split_once('/').map_or((rest, String::new()), |(a, p)| (a, format!("/{p}")));
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = authority.rsplit_once(':')?;
    let path = path.split(['?', '#']).next().unwrap_or_default().to_owned();
    Some((host.to_owned(), port.parse().ok()?, path))
}

// ------------------------------------------------------------ the binary

/// `hookline <args>` with no inherited HOOKLINE_* variable (clap prints
/// set values into help, and HOOKLINE_CONFIG would read a file), plus `env`.
fn hookline(args: &[&str], env: &BTreeMap<String, String>) -> std::process::Output {
    let mut cmd = Command::new(hookline_e2e::hookline_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HOOKLINE_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).envs(env).env("NO_COLOR", "1").output().expect("running hookline")
}

/// `hookline <args> --help` with whitespace collapsed (so wrapping cannot
/// split `[env: NAME=]`), or `None` when it fails.
fn help(args: &[&str]) -> Option<String> {
    let mut all = args.to_vec();
    all.push("--help");
    let out = hookline(&all, &BTreeMap::new());
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" "))
}

/// [`help`] of `hookline <role>`, once per role for the whole test binary.
fn role_help(role: &str) -> Option<&'static str> {
    static CACHE: OnceLock<Mutex<BTreeMap<String, Option<&'static str>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    *cache.entry(role.to_owned()).or_insert_with(|| help(&[role]).map(|h| &*Box::leak(h.into_boxed_str())))
}

/// Whether `help` lists `key` as a setting (settings that hide their
/// values show `[env: KEY]`).
fn takes(help: &str, key: &str) -> bool {
    help.contains(&format!("[env: {key}=")) || help.contains(&format!("[env: {key}]"))
}

/// Every `HOOKLINE_*` word in `text`.
fn hookline_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("HOOKLINE_") && w.len() > "HOOKLINE_".len())
        .map(str::to_owned)
        .collect()
}

/// The variables the binary reads itself, outside clap (crates/hookline/src/config.rs).
const READ_OUTSIDE_CLAP: [&str; 2] = ["HOOKLINE_LOG", "HOOKLINE_LOG_FORMAT"];

/// The roles the compose file must run, each in its own container
/// (crates/hookline/src/serve.rs), and the servers each role must be told
/// about, since the binary's defaults (127.0.0.1) cannot work in a container.
const ROLES: [(&str, &[&str]); 4] = [
    ("subscriptions", &["HOOKLINE_NATS_URL"]),
    ("ingest", &["HOOKLINE_NATS_URL"]),
    ("delivery", &["HOOKLINE_NATS_URL", "HOOKLINE_DATABASE_URL", "HOOKLINE_SUBSCRIPTIONS_URL"]),
    ("console", &["HOOKLINE_SUBSCRIPTIONS_URL", "HOOKLINE_DELIVERY_URL"]),
];

/// The settings a role listens on. A subcommand that takes one of them
/// runs as a server (a service role or the console); one that takes none
/// is a CLI verb, which would exit at once in a container.
const LISTEN_ADDRS: [&str; 3] = ["HOOKLINE_GRPC_ADDR", "HOOKLINE_HTTP_ADDR", "HOOKLINE_CONSOLE_ADDR"];

/// Where a role answers its health check, the first its role takes: a
/// service's readiness on its HTTP port; the console, which has no such
/// listener, answers `/healthz` on its page port.
const HEALTH: [(&str, &str); 2] = [("HOOKLINE_HTTP_ADDR", "/readyz"), ("HOOKLINE_CONSOLE_ADDR", "/healthz")];

/// URLs for browsers, not dependencies: they name the host's view of a
/// container, so they are checked against published ports instead.
const BROWSER_URLS: [&str; 1] = ["HOOKLINE_CONSOLE_PUBLIC_URL"];

// ----------------------------------------------------------------- tests

#[test]
fn every_hookline_container_runs_a_real_service_role() {
    for compose in Compose::both() {
        every_hookline_container_runs_a_real_service_role_in(compose);
    }
}

fn every_hookline_container_runs_a_real_service_role_in(compose: &Compose) {
    let mut roles = BTreeSet::new();
    for (name, s) in compose.hookline() {
        let role = s.role();
        assert!(
            LISTEN_ADDRS.iter().any(|key| s.accepts(key)),
            "service `{name}`: command `{role}` is a CLI verb, not a role that listens (it takes none of {LISTEN_ADDRS:?})"
        );
        roles.insert(role);
    }
    for (role, needs) in ROLES {
        assert!(roles.contains(role), "{}: no container runs `hookline {role}`", compose.file);
        for (_, s) in compose.hookline().into_iter().filter(|(_, s)| s.role() == role) {
            for key in needs {
                // Panics naming the service and the key when it is not set.
                s.setting(key);
            }
        }
    }
}

#[test]
fn every_hookline_variable_is_accepted_by_its_role_with_its_value() {
    for compose in Compose::both() {
        every_hookline_variable_is_accepted_by_its_role_with_its_value_in(compose);
    }
}

fn every_hookline_variable_is_accepted_by_its_role_with_its_value_in(compose: &Compose) {
    for (name, s) in compose.hookline() {
        let role = s.role();
        let env = s.env();
        for key in env.keys().filter(|k| k.starts_with("HOOKLINE_")) {
            if READ_OUTSIDE_CLAP.contains(&key.as_str()) {
                continue;
            }
            assert!(
                s.accepts(key),
                "service `{name}`: environment `{key}` is not a setting of `hookline {role}` (see `hookline {role} --help`)"
            );
        }
        // `config show` validates every value as start-up does (clap parsers
        // and the cross-field checks) and exits non-zero naming the key.
        let out = hookline(&["config", "show"], &env);
        assert!(
            out.status.success(),
            "service `{name}`: its environment does not start `hookline {role}`: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // Names in comments and usage lines must exist too: as settings, or at
    // least in the binary's own help (e.g. a stream name it documents).
    let known: BTreeSet<String> = [
        vec![],
        vec!["dev"],
        vec!["ingest"],
        vec!["subscriptions"],
        vec!["delivery"],
        vec!["console"],
        vec!["delivery", "list"],
        vec!["portal", "link"],
        vec!["tenant"],
        vec!["publish"],
        vec!["stats"],
        vec!["admin"],
        vec!["config", "show"],
    ]
    .iter()
    .flat_map(|args| {
        let text = help(args).unwrap_or_else(|| panic!("`hookline {} --help` fails", args.join(" ")));
        hookline_names(&text)
    })
    .collect();
    for (no, line) in compose.text.lines().enumerate() {
        for word in hookline_names(line) {
            assert!(
                known.contains(&word) || READ_OUTSIDE_CLAP.contains(&word.as_str()),
                "{}:{}: `{word}` is neither a setting nor a name hookline knows",
                compose.file,
                no + 1
            );
        }
    }
}

#[test]
fn hookline_services_authenticate_with_the_operator_token_from_the_env_file() {
    for compose in Compose::both() {
        hookline_services_authenticate_with_the_operator_token_from_the_env_file_in(compose);
    }
}

fn hookline_services_authenticate_with_the_operator_token_from_the_env_file_in(compose: &Compose) {
    let generate = r#"printf 'HOOKLINE_OPERATOR_TOKEN=%s\n' "$(head -c32 /dev/urandom | base64)" > .env"#;
    assert!(compose.text.contains(generate), "docker-compose.yml tells how to generate .env: {generate}");
    for (name, s) in compose.hookline() {
        let env = s.env();
        let token = env.get("HOOKLINE_OPERATOR_TOKEN").map(String::as_str).unwrap_or_default();
        assert_eq!(token, DOTENV[0].1, "service `{name}`: HOOKLINE_OPERATOR_TOKEN comes from .env");
        assert_ne!(
            env.get("HOOKLINE_ALLOW_UNAUTHENTICATED").map(String::as_str),
            Some("true"),
            "service `{name}`: runs without authentication"
        );
        // Without .env, compose refuses to start rather than run open.
        let raw = s.yaml.get("environment").and_then(|e| e.get("HOOKLINE_OPERATOR_TOKEN")).and_then(Yaml::str);
        assert!(
            raw.is_some_and(|v| v.starts_with("${HOOKLINE_OPERATOR_TOKEN:?")),
            "service `{name}`: HOOKLINE_OPERATOR_TOKEN must be `${{HOOKLINE_OPERATOR_TOKEN:?...}}`, not {raw:?}"
        );
    }
}

#[test]
fn hookline_containers_publish_the_ports_they_listen_on() {
    for compose in Compose::both() {
        hookline_containers_publish_the_ports_they_listen_on_in(compose);
    }
}

fn hookline_containers_publish_the_ports_they_listen_on_in(compose: &Compose) {
    let header: String = compose.text.lines().take_while(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n");
    for (name, s) in compose.hookline() {
        let listens = s.listens();
        for (key, addr) in &listens {
            assert!(
                addr.ip().is_unspecified(),
                "service `{name}`: environment `{key}` listens on {} only: unreachable from other containers",
                addr.ip()
            );
        }
        let ports = s.ports();
        for (_, container) in &ports {
            assert!(
                listens.iter().any(|(_, addr)| addr.port() == *container),
                "service `{name}`: `ports` publishes container port {container}, but it listens on {listens:?}"
            );
        }
        // The console's public URL is the host's view of its page port,
        // and the header tells it to the reader.
        for key in BROWSER_URLS {
            let Some(url) = s.env().remove(key) else { continue };
            let (_, port, _) = split_url(&url)
                .unwrap_or_else(|| panic!("service `{name}`: environment `{key}`: `{url}` has no host:port"));
            let console = s.addr("HOOKLINE_CONSOLE_ADDR").port();
            assert!(
                ports.contains(&(Some(port), console)),
                "service `{name}`: environment `{key}` is {url}, but the host publishes {ports:?} (host, container) and the console listens on {console}"
            );
            assert!(
                header.contains(&url),
                "{}: the header comment does not give the console's URL {url}",
                compose.file
            );
        }
    }
    let mut host_ports = BTreeMap::new();
    for (name, s) in compose.services() {
        for (host, _) in (Service { name, yaml: s }).ports() {
            if let Some(p) = host
                && let Some(other) = host_ports.insert(p, name.clone())
            {
                panic!("services `{other}` and `{name}`: both publish host port {p}");
            }
        }
    }
}

#[test]
fn hookline_health_checks_ask_readyz_on_the_http_port_or_the_console_healthz() {
    for compose in Compose::both() {
        hookline_health_checks_ask_where_their_role_answers_in(compose);
    }
}

fn hookline_health_checks_ask_where_their_role_answers_in(compose: &Compose) {
    let dockerfile = read("Dockerfile");
    for (name, s) in compose.hookline() {
        let (key, expected) = s.health();
        let listen = s.addr(key).port();
        let (host, port, path) = s.healthcheck_url();
        assert_eq!(path, expected, "service `{name}`: `healthcheck.test` asks {path}, not {expected}");
        assert_eq!(port, listen, "service `{name}`: `healthcheck.test` asks port {port}, but {key} is port {listen}");
        assert!(
            matches!(host.as_str(), "127.0.0.1" | "localhost"),
            "service `{name}`: `healthcheck.test` asks {host}, not the container itself"
        );
        let test = s.yaml.get("healthcheck").and_then(|h| h.get("test")).and_then(Yaml::strings).unwrap_or_default();
        if test.first().map(String::as_str) == Some("CMD") {
            let tool = &test[1];
            assert!(
                dockerfile.lines().any(|l| l.contains("install") && l.split_whitespace().any(|w| w == tool)),
                "service `{name}`: `healthcheck.test` runs `{tool}`, which the Dockerfile does not install"
            );
        }
    }
    // A dependency that must be healthy needs a health check.
    for (name, s) in compose.services() {
        for (dep, how) in s.get("depends_on").map(Yaml::entries).unwrap_or_default() {
            let condition = how.get("condition").and_then(Yaml::str).unwrap_or("service_started");
            let target = compose
                .service(dep)
                .unwrap_or_else(|| panic!("service `{name}`: `depends_on` names `{dep}`, no such service"));
            if condition == "service_healthy" {
                assert!(
                    target.get("healthcheck").is_some(),
                    "service `{name}`: `depends_on.{dep}` waits for healthy, but `{dep}` has no healthcheck"
                );
            }
        }
    }
}

#[test]
fn hookline_urls_name_services_they_depend_on() {
    for compose in Compose::both() {
        hookline_urls_name_services_they_depend_on_in(compose);
    }
}

fn hookline_urls_name_services_they_depend_on_in(compose: &Compose) {
    // `Some(None)`: a Hookline service that serves no gRPC (the console).
    let grpc_port = |svc: &str| {
        compose
            .hookline()
            .into_iter()
            .find(|(n, _)| *n == svc)
            .map(|(_, s)| s.accepts("HOOKLINE_GRPC_ADDR").then(|| s.addr("HOOKLINE_GRPC_ADDR").port()))
    };
    for (name, s) in compose.hookline() {
        let deps = s.depends_on();
        // HOOKLINE_NATS_URL may list several servers, comma separated.
        let urls: Vec<(String, String)> = s
            .env()
            .into_iter()
            .filter(|(k, _)| k.ends_with("_URL") && !BROWSER_URLS.contains(&k.as_str()))
            .flat_map(|(k, v)| v.split(',').map(|u| (k.clone(), u.trim().to_owned())).collect::<Vec<_>>())
            .collect();
        for (key, value) in &urls {
            let (host, port, _) = split_url(value)
                .unwrap_or_else(|| panic!("service `{name}`: environment `{key}`: `{value}` has no host:port"));
            assert!(
                compose.service(&host).is_some(),
                "service `{name}`: environment `{key}` points at `{host}`, no such service"
            );
            assert!(
                deps.contains(&host),
                "service `{name}`: environment `{key}` points at `{host}`, which is missing from its `depends_on`"
            );
            if let Some(p) = grpc_port(&host) {
                let p = p.unwrap_or_else(|| {
                    panic!("service `{name}`: environment `{key}` points at `{host}`, which serves no gRPC")
                });
                assert_eq!(
                    port, p,
                    "service `{name}`: environment `{key}` uses port {port}, but `{host}` serves gRPC on {p}"
                );
            }
        }
    }
}

#[test]
fn delivery_address_openings_are_exactly_the_compose_network() {
    for compose in Compose::both() {
        delivery_address_openings_are_exactly_the_compose_network_in(compose);
    }
}

fn delivery_address_openings_are_exactly_the_compose_network_in(compose: &Compose) {
    let subnets: BTreeSet<String> = compose
        .doc
        .get("networks")
        .map(Yaml::entries)
        .unwrap_or_default()
        .iter()
        .flat_map(|(_, n)| n.get("ipam").and_then(|i| i.get("config")).map(Yaml::items).unwrap_or_default())
        .filter_map(|c| c.get("subnet").and_then(Yaml::str).map(str::to_owned))
        .collect();
    let mut values = BTreeMap::new();
    for (name, s) in compose.hookline() {
        let Some(allow) = s.env().remove("HOOKLINE_DELIVERY_ALLOW_CIDRS") else { continue };
        for cidr in allow.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            assert!(
                subnets.contains(cidr),
                "service `{name}`: environment `HOOKLINE_DELIVERY_ALLOW_CIDRS` opens {cidr}, which is not a subnet of the compose networks {subnets:?}"
            );
        }
        values.insert(name, allow);
    }
    // Subscriptions checks endpoint URLs at creation with the policy that
    // delivery applies at send: they must agree.
    let distinct: BTreeSet<&String> = values.values().collect();
    assert!(distinct.len() <= 1, "HOOKLINE_DELIVERY_ALLOW_CIDRS differs between services: {values:?}");
}

/// Only roles with an HTTP listener (`HOOKLINE_HTTP_ADDR`) serve
/// `/metrics`: the console has none, so it is neither scraped nor expected.
#[test]
fn prometheus_scrapes_every_hookline_service_on_its_http_port() {
    let compose = Compose::get();
    let prom = compose.by_image("prom/prometheus");
    let config = prom.host_path("/etc/prometheus/prometheus.yml").unwrap_or_else(|| {
        panic!("service `{}`: `volumes` mounts nothing at /etc/prometheus/prometheus.yml", prom.name)
    });
    let rel = config.strip_prefix(root()).unwrap_or(&config).display().to_string();
    let doc = Yaml::parse(&rel, &std::fs::read_to_string(&config).unwrap_or_else(|e| panic!("{rel}: {e}")));
    let mut scraped = BTreeSet::new();
    for job in doc.get("scrape_configs").map(Yaml::items).unwrap_or_default() {
        for sc in job.get("static_configs").map(Yaml::items).unwrap_or_default() {
            for target in sc.get("targets").and_then(Yaml::strings).unwrap_or_default() {
                let (host, port) =
                    target.rsplit_once(':').unwrap_or_else(|| panic!("{rel}: target `{target}` has no port"));
                let (_, s) = compose.hookline().into_iter().find(|(n, _)| *n == host).unwrap_or_else(|| {
                    panic!("{rel}: target `{target}` is not a Hookline service of docker-compose.yml")
                });
                assert!(
                    s.accepts("HOOKLINE_HTTP_ADDR"),
                    "{rel}: target `{target}`: `hookline {}` serves no /metrics (it takes no HOOKLINE_HTTP_ADDR)",
                    s.role()
                );
                let http = s.addr("HOOKLINE_HTTP_ADDR").port();
                assert_eq!(
                    port,
                    http.to_string(),
                    "{rel}: target `{target}`: service `{host}` serves /metrics on HOOKLINE_HTTP_ADDR port {http}"
                );
                scraped.insert(host.to_owned());
            }
        }
    }
    for (name, _) in compose.hookline().into_iter().filter(|(_, s)| s.accepts("HOOKLINE_HTTP_ADDR")) {
        assert!(scraped.contains(name), "{rel}: service `{name}` is not scraped");
    }
    for rule in doc.get("rule_files").and_then(Yaml::strings).unwrap_or_default() {
        let host = prom
            .host_path(&rule)
            .unwrap_or_else(|| panic!("{rel}: rule file {rule} is not mounted into service `{}`", prom.name));
        assert!(
            host.is_file(),
            "service `{}`: rule file {rule} is mounted from {}, which does not exist",
            prom.name,
            host.display()
        );
    }
}

#[test]
fn grafana_provisioning_is_where_its_mounts_put_it() {
    let compose = Compose::get();
    let grafana = compose.by_image("grafana/grafana");
    let g = grafana.name;
    let provisioning = grafana
        .host_path("/etc/grafana/provisioning")
        .unwrap_or_else(|| panic!("service `{g}`: `volumes` mounts nothing at /etc/grafana/provisioning"));
    let yml = |dir: &str| -> Vec<(String, Yaml)> {
        let dir = provisioning.join(dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("service `{g}`: {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "service `{g}`: no provisioning file in {}", dir.display());
        files
            .iter()
            .map(|f| {
                let rel = f.strip_prefix(root()).unwrap_or(f).display().to_string();
                let doc = Yaml::parse(&rel, &std::fs::read_to_string(f).unwrap());
                (rel, doc)
            })
            .collect()
    };
    let (mut uids, mut types) = (BTreeSet::new(), BTreeSet::new());
    for (rel, doc) in yml("datasources") {
        for ds in doc.get("datasources").map(Yaml::items).unwrap_or_default() {
            uids.extend(ds.get("uid").and_then(Yaml::str).map(str::to_owned));
            types.extend(ds.get("type").and_then(Yaml::str).map(str::to_owned));
            let url = ds.get("url").and_then(Yaml::str).unwrap_or_default();
            let (host, port, _) =
                split_url(url).unwrap_or_else(|| panic!("{rel}: data source url `{url}` has no host:port"));
            let target =
                compose.service(&host).unwrap_or_else(|| panic!("{rel}: data source url `{url}`: no service `{host}`"));
            let ports: Vec<u16> = (Service { name: &host, yaml: target }).ports().iter().map(|(_, c)| *c).collect();
            assert!(
                ports.contains(&port),
                "{rel}: data source url `{url}`: service `{host}` publishes {ports:?}, not {port}"
            );
            assert!(
                grafana.depends_on().contains(&host),
                "service `{g}`: its data source `{host}` is missing from `depends_on`"
            );
        }
    }
    let mut dashboards = 0;
    for (rel, doc) in yml("dashboards") {
        for provider in doc.get("providers").map(Yaml::items).unwrap_or_default() {
            let path = provider.get("options").and_then(|o| o.get("path")).and_then(Yaml::str).unwrap_or_default();
            let dir = grafana
                .host_path(path)
                .unwrap_or_else(|| panic!("{rel}: dashboards path `{path}` is not mounted into service `{g}`"));
            for entry in std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{rel}: `{path}` is mounted from {}: {e}", dir.display()))
            {
                let file = entry.unwrap().path();
                if file.extension().is_none_or(|x| x != "json") {
                    continue;
                }
                let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                let panels = json["panels"].as_array().unwrap_or_else(|| panic!("{}: no panels", file.display()));
                for p in panels {
                    let Some(uid) = p["datasource"]["uid"].as_str() else { continue };
                    // `${name}`: the dashboard's data source variable, which
                    // offers every provisioned data source of its type.
                    if let Some(name) = uid.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                        let variables = json["templating"]["list"].as_array().cloned().unwrap_or_default();
                        let var = variables.iter().find(|v| v["name"] == name).unwrap_or_else(|| {
                            panic!("{}: panel `{}` uses `{uid}`, no such variable", file.display(), p["title"])
                        });
                        assert_eq!(var["type"], "datasource", "{}: variable `{name}`", file.display());
                        let kind = var["query"].as_str().unwrap_or_default();
                        assert!(
                            types.contains(kind),
                            "{}: variable `{name}` offers `{kind}` data sources, none provisioned ({types:?})",
                            file.display()
                        );
                    } else {
                        assert!(
                            uids.contains(uid),
                            "{}: panel `{}` uses data source `{uid}`, not provisioned ({uids:?})",
                            file.display(),
                            p["title"]
                        );
                    }
                }
                dashboards += 1;
            }
        }
    }
    assert!(dashboards > 0, "service `{g}`: no dashboard JSON is provisioned");
    // Paths in Grafana settings (e.g. the home dashboard) resolve through the mounts.
    for (key, value) in grafana.env().iter().filter(|(_, v)| v.starts_with('/')) {
        let host = grafana
            .host_path(value)
            .unwrap_or_else(|| panic!("service `{g}`: environment `{key}`: {value} is not mounted"));
        assert!(
            host.exists(),
            "service `{g}`: environment `{key}`: {value} is mounted from {}, which does not exist",
            host.display()
        );
    }
}

/// NATS runs with the shipped accounts (`tests/e2e/nats_accounts.rs` runs the
/// services under the same file): the config is mounted where the command
/// reads it, the JetStream store lies on a volume, and every Hookline service
/// logs in as the file's services user with its password (tenant publishers
/// are written over several lines, with their permissions, so they do not
/// match).
#[test]
fn nats_runs_the_shipped_accounts_and_the_services_log_in_as_their_user() {
    let compose = Compose::get();
    let nats = compose.by_image("nats:");
    let cmd = nats.yaml.get("command").and_then(Yaml::strings).expect("service `nats`: `command` is a list");
    let conf_at = cmd.iter().skip_while(|a| *a != "-c").nth(1);
    let conf_at = conf_at.unwrap_or_else(|| panic!("service `nats`: `command` gives no config file (-c): {cmd:?}"));
    assert_eq!(
        nats.host_path(conf_at),
        Some(root().join("./deploy/nats/hookline.conf")),
        "service `nats`: {conf_at} is not deploy/nats/hookline.conf"
    );
    let conf = read("deploy/nats/hookline.conf");
    let store = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("store_dir:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("deploy/nats/hookline.conf sets store_dir");
    let volumes = nats.yaml.get("volumes").and_then(Yaml::strings).unwrap_or_default();
    let on_volume = volumes.iter().any(|v| {
        let mut parts = v.split(':');
        let (source, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        !source.starts_with('.') && !source.starts_with('/') && store.starts_with(target)
    });
    assert!(on_volume, "service `nats`: the JetStream store {store} is not on a named volume: {volumes:?}");
    for (name, s) in compose.hookline().into_iter().filter(|(_, s)| s.accepts("HOOKLINE_NATS_URL")) {
        let url = s.setting("HOOKLINE_NATS_URL");
        let userinfo = url.split_once("://").and_then(|(_, r)| r.rsplit_once('@')).map(|(u, _)| u);
        let (user, password) = userinfo
            .and_then(|u| u.split_once(':'))
            .unwrap_or_else(|| panic!("service `{name}`: HOOKLINE_NATS_URL has no user:password@"));
        assert!(
            conf.contains(&format!("{{ user: {user}, password: \"{password}\" }}")),
            "service `{name}`: HOOKLINE_NATS_URL logs in as `{user}` with a password deploy/nats/hookline.conf does not give it"
        );
    }
}

/// The cluster file runs three NATS nodes on deploy/nats/cluster.conf whose
/// routes name exactly those nodes, each with its own server name and its
/// store on its own volume, on the nats-server release the tests run
/// (scripts/test.sh); every Hookline service runs at least twice, lists every
/// node in HOOKLINE_NATS_URL with the services' user, and asks for as many
/// stream replicas as there are nodes.
#[test]
fn the_cluster_file_runs_three_routed_nats_nodes_and_every_service_twice_on_all_of_them() {
    let compose = Compose::cluster();
    let nodes: Vec<Service<'_>> = compose
        .services()
        .iter()
        .filter(|(_, s)| s.get("image").and_then(Yaml::str).is_some_and(|i| i.starts_with("nats:")))
        .map(|(n, s)| Service { name: n, yaml: s })
        .collect();
    let names: BTreeSet<String> = nodes.iter().map(|n| n.name.to_owned()).collect();
    assert_eq!(nodes.len(), 3, "{}: NATS nodes {names:?}", compose.file);
    let script = read("scripts/test.sh");
    let tested = script
        .lines()
        .find_map(|l| l.strip_prefix("NATS_VERSION="))
        .expect("scripts/test.sh sets NATS_VERSION")
        .trim()
        .to_owned();
    let main_image = Compose::get().by_image("nats:").yaml.get("image").and_then(Yaml::str).unwrap_or_default();
    assert!(
        main_image.starts_with(&format!("nats:{tested}")),
        "docker-compose.yml runs {main_image}, tests run {tested}"
    );
    let conf = read("deploy/nats/cluster.conf");
    let routes: BTreeSet<String> = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nats-route://"))
        .filter_map(|r| r.split(':').next().map(str::to_owned))
        .collect();
    assert_eq!(routes, names, "deploy/nats/cluster.conf routes to {routes:?}, the cluster file runs {names:?}");
    assert!(conf.contains("include ./hookline.conf"), "deploy/nats/cluster.conf takes the accounts of hookline.conf");
    let mut volumes = BTreeSet::new();
    for node in &nodes {
        let image = node.yaml.get("image").and_then(Yaml::str).unwrap_or_default();
        assert_eq!(image, main_image, "service `{}`: runs {image}, docker-compose.yml {main_image}", node.name);
        let cmd = node.yaml.get("command").and_then(Yaml::strings).unwrap_or_default();
        let conf_at = cmd.iter().skip_while(|a| *a != "-c").nth(1).cloned().unwrap_or_default();
        assert_eq!(
            node.host_path(&conf_at),
            Some(root().join("./deploy/nats").join("cluster.conf")),
            "service `{}`: {conf_at} is not deploy/nats/cluster.conf",
            node.name
        );
        assert_eq!(node.setting("NATS_SERVER_NAME"), node.name, "service `{}`: NATS_SERVER_NAME", node.name);
        let data = node.yaml.get("volumes").and_then(Yaml::strings).unwrap_or_default();
        let named = data.iter().find(|v| v.ends_with(":/data") && !v.starts_with('.'));
        let named = named.unwrap_or_else(|| panic!("service `{}`: no named volume on /data: {data:?}", node.name));
        assert!(volumes.insert(named.clone()), "service `{}`: shares its store volume {named}", node.name);
    }
    let hookline_conf = read("deploy/nats/hookline.conf");
    let mut per_role = BTreeMap::<String, usize>::new();
    for (name, s) in compose.hookline() {
        *per_role.entry(s.role()).or_default() += 1;
        // The console reaches NATS only through the services.
        if !s.accepts("HOOKLINE_NATS_URL") {
            continue;
        }
        assert_eq!(s.setting("HOOKLINE_STREAM_REPLICAS"), nodes.len().to_string(), "service `{name}`");
        let urls = s.setting("HOOKLINE_NATS_URL");
        let hosts: BTreeSet<String> =
            urls.split(',').filter_map(|u| split_url(u.trim())).map(|(host, _, _)| host).collect();
        assert_eq!(hosts, names, "service `{name}`: HOOKLINE_NATS_URL lists {hosts:?}, not every node");
        for url in urls.split(',') {
            let userinfo = url.split_once("://").and_then(|(_, r)| r.rsplit_once('@')).map(|(u, _)| u);
            let (user, password) = userinfo
                .and_then(|u| u.split_once(':'))
                .unwrap_or_else(|| panic!("service `{name}`: {url} has no user:password@"));
            assert!(
                hookline_conf.contains(&format!("{{ user: {user}, password: \"{password}\" }}")),
                "service `{name}`: {url} logs in as `{user}` with a password deploy/nats/hookline.conf does not give it"
            );
        }
    }
    for (role, _) in ROLES {
        assert!(
            per_role.get(role).copied().unwrap_or(0) >= 2,
            "{}: fewer than two `{role}`: {per_role:?}",
            compose.file
        );
    }
}

/// The cluster file's header says both files can run at once.
#[test]
fn the_two_compose_files_publish_different_host_ports() {
    let published = |compose: &Compose| -> BTreeMap<u16, String> {
        let mut out = BTreeMap::new();
        for (name, s) in compose.services() {
            for (host, _) in (Service { name, yaml: s }).ports() {
                out.extend(host.map(|p| (p, name.clone())));
            }
        }
        out
    };
    let (single, cluster) = (published(Compose::get()), published(Compose::cluster()));
    for (port, name) in &cluster {
        if let Some(other) = single.get(port) {
            panic!("host port {port}: `{other}` of docker-compose.yml and `{name}` of docker-compose.cluster.yml");
        }
    }
}

#[test]
fn bind_mounts_exist() {
    for compose in Compose::both() {
        bind_mounts_exist_in(compose);
    }
}

fn bind_mounts_exist_in(compose: &Compose) {
    for (name, s) in compose.services() {
        for (host, container) in (Service { name, yaml: s }).mounts() {
            assert!(
                root().join(&host).exists(),
                "service `{name}`: `volumes` mounts {host} at {container}, but {host} does not exist"
            );
        }
    }
}

#[test]
fn the_dockerfile_build_stage_names_the_hookline_binary_and_enters_it() {
    let compose = Compose::get();
    let mut contexts = BTreeSet::new();
    let mut images = BTreeSet::new();
    for (name, s) in compose.hookline() {
        let context = match s.yaml.get("build") {
            Some(Yaml::Scalar(c)) => c.clone(),
            Some(b) => b.get("context").and_then(Yaml::str).unwrap_or(".").to_owned(),
            None => ".".to_owned(),
        };
        assert!(
            root().join(&context).join("Dockerfile").is_file(),
            "service `{name}`: `build` context `{context}` has no Dockerfile"
        );
        contexts.insert(context);
        images.extend(s.yaml.get("image").and_then(Yaml::str).map(str::to_owned));
    }
    assert_eq!(contexts.len(), 1, "Hookline services build from different contexts: {contexts:?}");
    assert!(images.len() <= 1, "Hookline services use different images: {images:?}");
    let context = contexts.into_iter().next().unwrap();
    let rel = format!("{context}/Dockerfile");
    // Instructions with their continuation lines joined.
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read(&rel).lines() {
        let t = line.trim();
        if t.starts_with('#') && current.is_empty() {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(t);
                if !current.trim().is_empty() {
                    instructions.push(std::mem::take(&mut current));
                }
                current.clear();
            }
        }
    }
    assert!(
        instructions.iter().any(|i| i.starts_with("RUN") && i.contains("cargo build") && i.contains("--bin hookline")),
        "{rel}: no `RUN cargo build ... --bin hookline`"
    );
    let entrypoint = instructions.iter().rev().find_map(|i| i.strip_prefix("ENTRYPOINT"));
    let entrypoint = entrypoint.unwrap_or_else(|| panic!("{rel}: no ENTRYPOINT")).trim();
    // The exec form `["hookline"]` is a JSON array, so YAML reads it too.
    let first = serde_yaml_ng::from_str::<Vec<String>>(entrypoint)
        .ok()
        .and_then(|v| v.into_iter().next())
        .unwrap_or_else(|| entrypoint.split_whitespace().next().unwrap_or_default().to_owned());
    assert!(first == "hookline" || first.ends_with("/hookline"), "{rel}: ENTRYPOINT is `{entrypoint}`, not hookline");
}

/// What the checks rely on from the YAML library, in the forms the compose
/// files use: merge keys resolved (also nested, as in the cluster file's
/// `environment: { <<: *hookline-env }`), explicit keys winning over merged
/// ones, every scalar as text, and a key given twice refused.
#[test]
fn the_yaml_reader_reads_what_the_compose_file_uses() {
    let doc = Yaml::parse(
        "sample",
        "x-env: &env\n  A: 1\n  B: \"two: #2\"\n  ON: true\nx-svc: &svc\n  image: i\n  environment:\n    <<: *env\n    B: svc\nb:\n  <<: *svc\n  environment:\n    <<: *env\n    B: three\n  depends_on: *env\nlist:\n- p\n- \"q:r\"\n- k: v\n  w: z\nflow: [\"CMD\", 'x', y]\nblock: |\n  line one\n  # not a comment\nempty:\nafter: end\n",
    );
    let b = doc.get("b").unwrap();
    assert_eq!(b.get("image").and_then(Yaml::str), Some("i"), "a merged key");
    let env = b.get("environment").unwrap();
    assert_eq!(env.get("A").and_then(Yaml::str), Some("1"), "a nested merge, a number as text");
    assert_eq!(env.get("B").and_then(Yaml::str), Some("three"), "explicit keys win over merged ones");
    assert_eq!(env.get("ON").and_then(Yaml::str), Some("true"));
    assert!(env.get("<<").is_none(), "the merge key itself is gone");
    assert_eq!(b.get("depends_on").unwrap().names(), ["A", "B", "ON"], "an alias");
    let svc = doc.get("x-svc").unwrap().get("environment").unwrap();
    assert_eq!(svc.get("B").and_then(Yaml::str), Some("svc"));
    assert_eq!(doc.get("x-env").unwrap().get("B").and_then(Yaml::str), Some("two: #2"));
    let list = doc.get("list").unwrap().items();
    assert_eq!(list[1].str(), Some("q:r"));
    assert_eq!(list[2].get("w").and_then(Yaml::str), Some("z"));
    assert_eq!(doc.get("flow").unwrap().strings().unwrap(), ["CMD", "x", "y"]);
    assert!(doc.get("block").unwrap().str().unwrap().contains("# not a comment"));
    assert_eq!(doc.get("empty").and_then(Yaml::str), Some(""));
    assert_eq!(doc.get("after").and_then(Yaml::str), Some("end"));
    assert!(std::panic::catch_unwind(|| Yaml::parse("dup", "a: 1\na: 2\n")).is_err(), "duplicate keys are refused");
    assert!(std::panic::catch_unwind(|| Yaml::parse("alias", "a: *nowhere\n")).is_err(), "unknown aliases are refused");
    assert!(std::panic::catch_unwind(|| Yaml::parse("tab", "a:\n\tb: 1\n")).is_err(), "tabs are refused");
}
