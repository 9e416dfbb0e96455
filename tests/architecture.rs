//! The crate boundaries of ARCHITECTURE.md, checked against what Cargo
//! resolves (`cargo metadata`), so a boundary is kept by a failing test
//! rather than by a comment:
//!
//! * the service crates (ingest, subscriptions, the delivery hot path and
//!   the delivery log) never depend on one another: what they share lives
//!   in library crates (`hookline-tenants`, `hookline-auth`, `hookline-bus`,
//!   ...), and only the binary, `hookline`, puts them together;
//! * no other crate depends on a service crate either;
//! * the delivery hot path (`hookline-delivery`) does not reach Postgres:
//!   neither `sqlx` nor `hookline-store` is among its normal dependencies,
//!   directly or through another crate;
//! * ARCHITECTURE.md's code map is true to the workspace: it has a heading
//!   for every package and none for a package that does not exist, and its
//!   list of crate dependencies is the real one.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use serde_json::Value;

/// The crates that implement a service. Only [`BINARY`] may depend on them.
const SERVICES: &[&str] =
    &["hookline-ingest", "hookline-subscriptions", "hookline-delivery", "hookline-delivery-log", "hookline-console"];
const BINARY: &str = "hookline";
/// The hot path of delivery, and what it must not reach through its normal
/// dependencies: Postgres, and the crates that read it.
const HOT_PATH: &str = "hookline-delivery";
const POSTGRES: &[&str] = &["sqlx", "sqlx-core", "sqlx-postgres", "hookline-store", "hookline-delivery-log"];

/// One dependency edge between two packages.
struct Edge {
    to: String,
    /// `normal`, `dev` or `build`.
    kinds: Vec<String>,
}

struct Graph {
    /// Workspace package names.
    workspace: Vec<String>,
    /// Workspace package name → its directory, relative to the workspace root.
    dirs: HashMap<String, PathBuf>,
    /// Package name → what it depends on, as Cargo resolves it for the
    /// host platform (features unified across the workspace).
    deps: HashMap<String, Vec<Edge>>,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned())
}

/// The host triple, so `cargo metadata` resolves (and fetches) only what
/// this platform builds, which a fresh machine already has after the build.
fn host() -> Option<String> {
    let out = Command::new(cargo()).arg("-vV").output().ok()?;
    String::from_utf8(out.stdout).ok()?.lines().find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
}

fn graph() -> &'static Graph {
    static GRAPH: OnceLock<Graph> = OnceLock::new();
    GRAPH.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let mut cmd = Command::new(cargo());
        cmd.args(["metadata", "--format-version", "1", "--manifest-path"]).arg(&manifest);
        if let Some(host) = host() {
            cmd.args(["--filter-platform", &host]);
        }
        let out = cmd.output().expect("run cargo metadata");
        assert!(out.status.success(), "cargo metadata failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");

        let names: HashMap<&str, &str> = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| (p["id"].as_str().expect("id"), p["name"].as_str().expect("name")))
            .collect();
        let workspace = meta["workspace_members"]
            .as_array()
            .expect("workspace_members")
            .iter()
            .map(|id| names[id.as_str().expect("member id")].to_owned())
            .collect();
        let root = Path::new(meta["workspace_root"].as_str().expect("workspace_root"));
        let dirs = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .filter_map(|p| {
                let dir = Path::new(p["manifest_path"].as_str().expect("manifest_path")).parent()?;
                Some((p["name"].as_str()?.to_owned(), dir.strip_prefix(root).ok()?.to_owned()))
            })
            .collect();
        let mut deps = HashMap::new();
        for node in meta["resolve"]["nodes"].as_array().expect("resolve.nodes") {
            let from = names[node["id"].as_str().expect("node id")].to_owned();
            let edges = node["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .map(|d| Edge {
                    to: names[d["pkg"].as_str().expect("dep pkg")].to_owned(),
                    kinds: d["dep_kinds"]
                        .as_array()
                        .expect("dep_kinds")
                        .iter()
                        .map(|k| k["kind"].as_str().unwrap_or("normal").to_owned())
                        .collect(),
                })
                .collect();
            deps.insert(from, edges);
        }
        Graph { workspace, dirs, deps }
    })
}

impl Graph {
    fn member(&self, name: &str) -> &[Edge] {
        assert!(
            self.workspace.iter().any(|w| w == name),
            "`{name}` is not a workspace package any more: update tests/architecture.rs (and ARCHITECTURE.md)"
        );
        &self.deps[name]
    }

    /// The shortest chain of normal dependencies from `from` to a package
    /// in `targets`, if any.
    fn normal_path(&self, from: &str, targets: &[&str]) -> Option<Vec<String>> {
        let mut came_from: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = VecDeque::from([from.to_owned()]);
        while let Some(at) = queue.pop_front() {
            if targets.contains(&at.as_str()) {
                let mut path = vec![at.clone()];
                while let Some(prev) = came_from.get(path.last().expect("non-empty")) {
                    path.push(prev.clone());
                }
                path.reverse();
                return Some(path);
            }
            for edge in self.deps.get(&at).into_iter().flatten() {
                if edge.kinds.iter().any(|k| k == "normal") && edge.to != from && !came_from.contains_key(&edge.to) {
                    came_from.insert(edge.to.clone(), at.clone());
                    queue.push_back(edge.to.clone());
                }
            }
        }
        None
    }
}

#[test]
fn service_crates_do_not_depend_on_one_another() {
    let g = graph();
    let mut broken = Vec::new();
    for service in SERVICES {
        for edge in g.member(service) {
            if SERVICES.contains(&edge.to.as_str()) {
                broken.push(format!(
                    "`{service}` depends on the service crate `{}` ({}): service crates never depend on one another; \
                     move what they share into a library crate (hookline-tenants, hookline-auth, hookline-bus, ...), \
                     and let the binary (`{BINARY}`) put the services together",
                    edge.to,
                    edge.kinds.join(", ")
                ));
            }
        }
    }
    assert!(broken.is_empty(), "\n{}\n", broken.join("\n"));
}

#[test]
fn only_the_binary_depends_on_service_crates() {
    let g = graph();
    let mut broken = Vec::new();
    for member in &g.workspace {
        if member == BINARY || SERVICES.contains(&member.as_str()) {
            continue;
        }
        for edge in g.member(member) {
            if SERVICES.contains(&edge.to.as_str()) {
                broken.push(format!(
                    "`{member}` depends on the service crate `{}` ({}): only `{BINARY}` may; \
                     a library crate that needs a service's code makes that service everyone's dependency",
                    edge.to,
                    edge.kinds.join(", ")
                ));
            }
        }
    }
    assert!(broken.is_empty(), "\n{}\n", broken.join("\n"));
}

#[test]
fn the_delivery_hot_path_does_not_reach_postgres() {
    let g = graph();
    g.member(HOT_PATH);
    if let Some(path) = g.normal_path(HOT_PATH, POSTGRES) {
        panic!(
            "\n`{HOT_PATH}` reaches `{}` through its normal dependencies: {}\n\
             Nothing on the delivery hot path reads Postgres; the code that does belongs in \
             `hookline-delivery-log` (or `hookline-store`), which the binary wires beside it.\n",
            path.last().expect("non-empty"),
            path.join(" → ")
        );
    }
}

#[test]
fn the_check_sees_transitive_dependencies() {
    // The rule above would pass vacuously if the graph lost its edges:
    // the delivery log does reach sqlx, through hookline-store.
    let path = graph().normal_path("hookline-delivery-log", &["sqlx"]).expect("the delivery log reaches sqlx");
    assert!(path.len() >= 2, "{path:?}");
}

/// ARCHITECTURE.md's "Code map" section: from its heading to the next `## `.
fn code_map() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).expect("read ARCHITECTURE.md");
    let start = text.find("\n## Code map\n").expect("ARCHITECTURE.md has a `## Code map` section") + 1;
    let end = text[start + 3..].find("\n## ").map_or(text.len(), |i| start + 3 + i);
    text[start..end].to_owned()
}

/// The `code` spans of a line, in order.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// The package a short crate name of ARCHITECTURE.md stands for.
fn package(short: &str) -> String {
    if short == BINARY { short.to_owned() } else { format!("hookline-{short}") }
}

/// The code map's crate headings, "### `crates/proto` (`hookline-proto`)":
/// (path, package name).
fn code_map_headings(map: &str) -> Vec<(String, String)> {
    map.lines()
        .filter_map(|l| l.strip_prefix("### "))
        .filter_map(|h| match code_spans(h)[..] {
            [path, name, ..] => Some((path.trim_end_matches('/').to_owned(), name.to_owned())),
            _ => None,
        })
        .collect()
}

/// The code map's list of crate dependencies: its first bullet list, one
/// item per package, "- `ingest` (...) uses `proto`, `domain` and `bus`."
/// (an item may wrap onto indented lines). Package → the Hookline packages
/// it names after "uses".
fn code_map_dependencies(map: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut items: Vec<String> = Vec::new();
    for line in map.lines().skip_while(|l| !l.starts_with("- `")) {
        if let Some(item) = line.strip_prefix("- ") {
            items.push(item.to_owned());
        } else if line.starts_with("  ") && !items.is_empty() {
            items.last_mut().expect("non-empty").push_str(line);
        } else {
            break;
        }
    }
    items
        .iter()
        .map(|item| {
            let (who, uses) = item.split_once(" uses ").unwrap_or_else(|| panic!("no \"uses\" in: - {item}"));
            let who = code_spans(who).first().copied().unwrap_or_else(|| panic!("no `crate` in: - {item}"));
            (package(who), code_spans(uses).into_iter().map(package).collect())
        })
        .collect()
}

#[test]
fn the_code_map_has_a_heading_for_every_package_and_no_other() {
    let g = graph();
    let headings = code_map_headings(&code_map());
    let mut broken = Vec::new();
    for member in &g.workspace {
        if !headings.iter().any(|(_, name)| name == member) {
            broken.push(format!("ARCHITECTURE.md's code map has no heading for the workspace package `{member}`"));
        }
    }
    for (path, name) in &headings {
        match g.dirs.get(name) {
            None => broken
                .push(format!("ARCHITECTURE.md's code map names `{name}` ({path}), which is not a workspace package")),
            Some(dir) if path.starts_with("crates/") && Path::new(path) != dir => broken
                .push(format!("ARCHITECTURE.md's code map puts `{name}` in {path}, but it is in {}", dir.display())),
            Some(_) => {}
        }
    }
    assert!(broken.is_empty(), "\n{}\n", broken.join("\n"));
}

#[test]
fn the_code_map_lists_the_real_crate_dependencies() {
    let g = graph();
    let listed = code_map_dependencies(&code_map());
    let real: BTreeMap<String, BTreeSet<String>> = g
        .workspace
        .iter()
        .map(|member| {
            let uses = g
                .member(member)
                .iter()
                .filter(|e| e.kinds.iter().any(|k| k == "normal") && g.workspace.contains(&e.to))
                .map(|e| e.to.clone())
                .collect();
            (member.clone(), uses)
        })
        .collect();
    let mut broken = Vec::new();
    for (member, uses) in &real {
        match listed.get(member) {
            None => broken.push(format!("ARCHITECTURE.md's dependency list has no line for `{member}`")),
            Some(said) if said != uses => {
                broken.push(format!("ARCHITECTURE.md says `{member}` uses {said:?}; Cargo says {uses:?}"))
            }
            Some(_) => {}
        }
    }
    for member in listed.keys().filter(|m| !real.contains_key(*m)) {
        broken.push(format!("ARCHITECTURE.md's dependency list names `{member}`, which is not a workspace package"));
    }
    assert!(broken.is_empty(), "\n{}\n", broken.join("\n"));
}
