//! A three-node NATS JetStream cluster on loopback, and the choice of the
//! `nats-server` binary every test uses.
//!
//! Hookline runs on a cluster in production, so its failure modes (a stream
//! leader dying, a node coming back with an empty disk, leaders moving) are
//! tested against real servers: three `nats-server` processes with routes to
//! each other, each with its own store, killed and restarted like machines.

use std::{
    io::{Read as _, Write as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{append, free_port, sigkill, tail, temp_dir};

pub use crate::nats::nats_server_bin;

/// One node: its ports stay the same across restarts.
struct Node {
    name: String,
    client_port: u16,
    route_port: u16,
    store: PathBuf,
    child: Option<Child>,
}

/// Three `nats-server -js` nodes routed to each other on loopback
/// (`-n n0..n2 --cluster_name hookline-test`), each with its own temporary
/// store. Killed, and their stores and logs removed, on drop.
pub struct NatsCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    /// Store directories used so far, one per [`restart_empty`](Self::restart_empty).
    generation: usize,
}

impl NatsCluster {
    pub const SIZE: usize = 3;

    /// Start three nodes and return once JetStream answers on each (a meta
    /// leader is elected).
    pub fn start() -> anyhow::Result<Self> {
        let dir = temp_dir("hookline-nats-cluster");
        let nodes = (0..Self::SIZE)
            .map(|i| Node {
                name: format!("n{i}"),
                client_port: free_port(),
                route_port: free_port(),
                store: dir.join(format!("store-n{i}-0")),
                child: None,
            })
            .collect();
        let mut cluster = Self { dir, nodes, generation: 0 };
        for i in 0..Self::SIZE {
            cluster.spawn(i)?;
        }
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let routes: Vec<String> = (0..Self::SIZE)
            .filter(|j| *j != i)
            .map(|j| format!("nats://127.0.0.1:{}", self.nodes[j].route_port))
            .collect();
        let log_path = self.log_path(i);
        let node = &mut self.nodes[i];
        std::fs::create_dir_all(&node.store)?;
        let mut log = append(&log_path)?;
        writeln!(log, "===== nats-server {} starting (store {}) =====", node.name, node.store.display())?;
        let bin = nats_server_bin();
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &node.client_port.to_string(), "-n", &node.name])
            .args(["--cluster_name", "hookline-test", "--cluster"])
            .arg(format!("nats://127.0.0.1:{}", node.route_port))
            .args(["--routes", &routes.join(",")])
            .arg("-sd")
            .arg(&node.store)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} (see scripts/test.sh)", bin.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// Wait until every running node answers `$JS.API.INFO`.
    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for i in 0..Self::SIZE {
            while let Some(child) = self.nodes[i].child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.nodes[i].child = None;
                    bail!("nats-server n{i} exited with {status}:\n{}", tail(&self.log_path(i), 20));
                }
                if jetstream_info(self.nodes[i].client_port).is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("nats cluster: n{i} has no JetStream within {timeout:?}:\n{}", tail(&self.log_path(i), 20));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// `nats://127.0.0.1:<port>` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// The OS process id of node `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// The client URLs of the nodes in `order`, comma separated (a
    /// `HOOKLINE_NATS_URL` list).
    pub fn urls(&self, order: &[usize]) -> String {
        order.iter().map(|i| self.url(*i)).collect::<Vec<_>>().join(",")
    }

    /// The server name (`n0`..`n2`) of node `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Node `i`'s stdout/stderr, across restarts.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}.log"))
    }

    /// SIGKILL node `i`: no flush, no goodbye.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            sigkill(&mut c);
        }
    }

    /// Kill node `i` if running, then start it again on the same ports with
    /// the same store; returns once it answers JetStream requests.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_ready(Duration::from_secs(60))
    }

    /// Kill node `i`, then start it on the same ports with a fresh, empty
    /// store (a replaced disk); the cluster copies the streams back to it.
    pub fn restart_empty(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        let _ = std::fs::remove_dir_all(&self.nodes[i].store);
        self.generation += 1;
        self.nodes[i].store = self.dir.join(format!("store-n{i}-{}", self.generation));
        self.spawn(i)?;
        self.wait_ready(Duration::from_secs(60))
    }

    /// SIGKILL every node: the whole cluster is down.
    pub fn kill_all(&mut self) {
        for i in 0..Self::SIZE {
            self.kill(i);
        }
    }

    /// Start every node that is not running, with its store, and wait until
    /// JetStream answers on all of them (a node alone cannot elect a leader,
    /// so they start together).
    pub fn restart_all(&mut self) -> anyhow::Result<()> {
        for i in 0..Self::SIZE {
            if self.nodes[i].child.is_none() {
                self.spawn(i)?;
            }
        }
        self.wait_ready(Duration::from_secs(60))
    }
}

/// Clients and JetStream requests: only with the `nats-client` feature, so
/// the kit's process handling does not pull in async-nats.
#[cfg(feature = "nats-client")]
impl NatsCluster {
    /// A client that knows every node (and reconnects to any of them).
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        let addrs: Vec<async_nats::ServerAddr> =
            (0..Self::SIZE).map(|i| self.url(i).parse()).collect::<Result<_, _>>()?;
        Ok(async_nats::ConnectOptions::new().connect(addrs).await?)
    }

    /// A JetStream request, answered by whichever node the client reaches.
    pub async fn js_request(&self, subject: &str) -> anyhow::Result<serde_json::Value> {
        let client = self.client().await?;
        let reply = tokio::time::timeout(Duration::from_secs(5), client.request(subject.to_owned(), "".into()))
            .await
            .with_context(|| format!("{subject}: no answer within 5 s"))??;
        Ok(serde_json::from_slice(&reply.payload)?)
    }

    /// `$JS.API.STREAM.INFO.<stream>`: the stream's state and cluster view.
    pub async fn stream_info(&self, stream: &str) -> anyhow::Result<serde_json::Value> {
        let info = self.js_request(&format!("$JS.API.STREAM.INFO.{stream}")).await?;
        if let Some(e) = info.get("error") {
            bail!("STREAM.INFO {stream}: {e}");
        }
        Ok(info)
    }

    /// The node leading `stream` (its `cluster.leader`), if it has a leader.
    pub async fn leader(&self, stream: &str) -> anyhow::Result<Option<usize>> {
        let info = self.stream_info(stream).await?;
        Ok(info["cluster"]["leader"].as_str().and_then(|name| self.index_of(name)))
    }

    /// The stream's configured replicas and how many of its peers (leader
    /// included) are current.
    pub async fn replicas(&self, stream: &str) -> anyhow::Result<(u64, usize)> {
        let info = self.stream_info(stream).await?;
        let configured = info["config"]["num_replicas"].as_u64().unwrap_or(1);
        let leader = usize::from(info["cluster"]["leader"].is_string());
        let current = info["cluster"]["replicas"]
            .as_array()
            .map(|peers| peers.iter().filter(|p| p["current"] == true && p["offline"] != true).count())
            .unwrap_or(0);
        Ok((configured, leader + current))
    }

    /// Ask the leader of `stream` to step down
    /// (`$JS.API.STREAM.LEADER.STEPDOWN.<stream>`); another node takes over.
    pub async fn step_down(&self, stream: &str) -> anyhow::Result<()> {
        let answer = self.js_request(&format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}")).await?;
        if answer["success"] != true {
            bail!("stepping down the leader of {stream}: {answer}");
        }
        Ok(())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.kill_all();
        if std::thread::panicking() {
            for i in 0..Self::SIZE {
                eprintln!(
                    "--- nats-server n{i} log ({}) ---\n{}",
                    self.log_path(i).display(),
                    tail(&self.log_path(i), 15)
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `$JS.API.INFO` answer of the server on `port`, unless it has none
/// (down, or no JetStream meta leader yet). Raw protocol over a blocking
/// socket, usable from sync code.
fn jetstream_info(port: u16) -> Option<String> {
    let probe = || -> std::io::Result<Option<String>> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_millis(1000)))?;
        s.write_all(b"CONNECT {\"verbose\":false}\r\nSUB _probe 1\r\nPUB $JS.API.INFO _probe 0\r\n\r\n")?;
        let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
        loop {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if text.contains("account_info_response") && text.ends_with("}\r\n") {
                return Ok((!text.contains("\"error\"")).then(|| text.into_owned()));
            }
        }
    };
    probe().ok().flatten()
}
