//! A small authoritative DNS server for tests: it answers A and AAAA
//! queries on a loopback port (UDP, and TCP for clients that fall back to
//! it) from a table the test changes while it runs, and counts the queries
//! per name. Enough of RFC 1035 for a stub resolver: one question, answers
//! with TTL 0 (so nothing is cached across a change), NXDOMAIN for names
//! not in the table, NOERROR without answers for other record types.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
    task::JoinSet,
};

#[derive(Default)]
struct Table {
    answers: HashMap<String, Vec<IpAddr>>,
    queries: HashMap<String, usize>,
}

/// The server; it stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    table: Arc<Mutex<Table>>,
    _tasks: JoinSet<()>,
}

impl DnsServer {
    /// Listen on a free loopback port, UDP and TCP alike.
    pub async fn start() -> Self {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("binding a loopback UDP port");
            // The same port number for TCP; if it is taken, try another.
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let table: Arc<Mutex<Table>> = Arc::default();
        let mut tasks = JoinSet::new();
        let t = table.clone();
        tasks.spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                if let Some(reply) = answer(&t, &buf[..n]) {
                    let _ = udp.send_to(&reply, from).await;
                }
            }
        });
        let t = table.clone();
        tasks.spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let t = t.clone();
                tokio::spawn(async move {
                    // Length-prefixed messages (RFC 1035 4.2.2), several per connection.
                    while let Ok(len) = stream.read_u16().await {
                        let mut query = vec![0u8; len.into()];
                        if stream.read_exact(&mut query).await.is_err() {
                            return;
                        }
                        let Some(reply) = answer(&t, &query) else { return };
                        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&reply);
                        if stream.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, table, _tasks: tasks }
    }

    /// `ip:port`, the form `HOOKLINE_DNS_SERVERS` takes.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on `name` resolves to `ip` alone.
    pub fn set_answer(&self, name: &str, ip: IpAddr) {
        self.table.lock().unwrap().answers.insert(normalize(name), vec![ip]);
    }

    /// Queries for `name` so far, of any record type, over UDP or TCP.
    pub fn queries_for(&self, name: &str) -> usize {
        self.table.lock().unwrap().queries.get(&normalize(name)).copied().unwrap_or(0)
    }

    /// Queries so far, for any name.
    pub fn queries(&self) -> usize {
        self.table.lock().unwrap().queries.values().sum()
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// The reply to one query message, or `None` for something that is not one.
fn answer(table: &Mutex<Table>, query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression is not used in questions
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).into_owned());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    query.get(..question_end)?;
    let name = normalize(&labels.join("."));
    let mut t = table.lock().unwrap();
    *t.queries.entry(name.clone()).or_default() += 1;
    let known = t.answers.get(&name);
    let records: Vec<IpAddr> = known
        .into_iter()
        .flatten()
        .copied()
        .filter(|ip| matches!((ip, qtype), (IpAddr::V4(_), TYPE_A) | (IpAddr::V6(_), TYPE_AAAA)))
        .collect();
    let rcode = if known.is_some() { 0 } else { 3 }; // NOERROR, NXDOMAIN
    let mut reply = Vec::with_capacity(question_end + records.len() * 28);
    reply.extend_from_slice(&query[..2]); // id
    reply.push(0x84 | (query[2] & 0x01)); // QR, AA, RD echoed
    reply.push(0x80 | rcode); // RA
    reply.extend_from_slice(&[0, 1]); // one question
    reply.extend_from_slice(&(records.len() as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional
    reply.extend_from_slice(&query[12..question_end]);
    for ip in records {
        reply.extend_from_slice(&[0xc0, 12]); // the name: a pointer to the question's
        let (rtype, data) = match ip {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        reply.extend_from_slice(&rtype.to_be_bytes());
        reply.extend_from_slice(&CLASS_IN.to_be_bytes());
        reply.extend_from_slice(&0u32.to_be_bytes()); // TTL 0: never cached
        reply.extend_from_slice(&(data.len() as u16).to_be_bytes());
        reply.extend_from_slice(&data);
    }
    Some(reply)
}
