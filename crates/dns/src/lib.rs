//! Host name resolution for webhook targets, shared by the save-time check
//! (subscriptions) and the send-time check (delivery's pinned resolver), so
//! both see the same answers.
//!
//! By default names go to the system resolver (`getaddrinfo`: `/etc/hosts`,
//! then the nameservers of `/etc/resolv.conf`). `HOOKLINE_DNS_SERVERS` names
//! nameservers to ask instead, over UDP with TCP for truncated answers, for
//! instance a filtering resolver that does not know internal names. With
//! it, the hosts file and search domains are not used: the servers alone
//! answer. Either way the addresses returned are only candidates: callers
//! check every one against the address policy and connect only to those
//! checked, so a resolver that lies (or rebinds) cannot steer a delivery.

use std::{
    fmt, io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use hickory_resolver::{
    TokioResolver,
    config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts},
    net::runtime::TokioRuntimeProvider,
};

/// Where host names are resolved. Cheap to clone.
#[derive(Clone, Default)]
pub struct Resolver(Inner);

#[derive(Clone, Default)]
enum Inner {
    /// `getaddrinfo`, through tokio's blocking pool.
    #[default]
    System,
    Servers {
        servers: Arc<[SocketAddr]>,
        resolver: Arc<TokioResolver>,
    },
}

impl Resolver {
    /// The operating system's resolver.
    pub fn system() -> Self {
        Self(Inner::System)
    }

    /// Ask exactly these nameservers (UDP, then TCP when an answer is
    /// truncated), in order of their response times.
    ///
    /// # Panics
    /// If `servers` is empty.
    pub fn with_servers(servers: &[SocketAddr]) -> Self {
        assert!(!servers.is_empty(), "at least one nameserver");
        let config = ResolverConfig::from_name_servers(
            servers
                .iter()
                .map(|s| {
                    let connection = |mut c: ConnectionConfig| {
                        c.port = s.port();
                        c
                    };
                    NameServerConfig::new(
                        s.ip(),
                        true,
                        vec![connection(ConnectionConfig::udp()), connection(ConnectionConfig::tcp())],
                    )
                })
                .collect(),
        );
        let mut options = ResolverOpts::default();
        options.use_hosts_file = ResolveHosts::Never;
        options.timeout = Duration::from_secs(2);
        options.attempts = 2;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .expect("a resolver with explicit nameservers and no system configuration builds");
        Self(Inner::Servers { servers: servers.into(), resolver: Arc::new(resolver) })
    }

    /// The `HOOKLINE_DNS_SERVERS` value: empty for the system resolver, else
    /// comma-separated `ip[:port]` (IPv6 as `[ip]:port`, `[ip]` or a bare
    /// `ip`; the port defaults to 53).
    ///
    /// # Errors
    /// The entry that is not an address.
    pub fn from_setting(s: &str) -> Result<Self, NotANameserver> {
        let servers = parse_servers(s)?;
        Ok(if servers.is_empty() { Self::system() } else { Self::with_servers(&servers) })
    }

    /// The nameservers asked, or `None` for the system resolver.
    pub fn servers(&self) -> Option<&[SocketAddr]> {
        match &self.0 {
            Inner::System => None,
            Inner::Servers { servers, .. } => Some(servers),
        }
    }

    /// The addresses of `host` (a name or an IP literal, IPv6 without
    /// brackets). An IP literal is returned as it is, without a query.
    ///
    /// # Errors
    /// `NotFound` when the name has no address; other kinds when no
    /// nameserver answered.
    pub async fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match &self.0 {
            Inner::System => Ok(tokio::net::lookup_host((host, 0)).await?.map(|a| a.ip()).collect()),
            Inner::Servers { resolver, .. } => {
                // A trailing dot: the name is absolute, no search domains.
                let absolute = if host.ends_with('.') { host.to_owned() } else { format!("{host}.") };
                match resolver.lookup_ip(absolute).await {
                    Ok(found) => Ok(found.iter().collect()),
                    Err(e) if e.is_no_records_found() => {
                        Err(io::Error::new(io::ErrorKind::NotFound, format!("{host}: no addresses ({e})")))
                    }
                    Err(e) => Err(io::Error::other(format!("{host}: {e}"))),
                }
            }
        }
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::System => f.write_str("Resolver(system)"),
            Inner::Servers { servers, .. } => write!(f, "Resolver({servers:?})"),
        }
    }
}

/// An entry of `HOOKLINE_DNS_SERVERS` that is not an `ip[:port]`; the
/// source is why it is not a bare IP address either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{entry}` is not a nameserver address like 10.0.0.53, 10.0.0.53:5353 or [fd00::53]:53")]
pub struct NotANameserver {
    pub entry: String,
    #[source]
    source: std::net::AddrParseError,
}

/// Comma-separated `ip[:port]` nameservers; empty entries are skipped.
///
/// # Errors
/// The entry that is not an address, with the expected form.
pub fn parse_servers(s: &str) -> Result<Vec<SocketAddr>, NotANameserver> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let bare = e.strip_prefix('[').and_then(|v6| v6.strip_suffix(']')).unwrap_or(e);
            e.parse::<SocketAddr>()
                .or_else(|_| bare.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|source| NotANameserver { entry: e.to_owned(), source })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_with_and_without_ports() {
        assert_eq!(
            parse_servers(" 10.0.0.53, 10.0.0.54:5353 ,[fd00::53]:54,fd00::55,[fd00::56]").unwrap(),
            vec![
                "10.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "10.0.0.54:5353".parse().unwrap(),
                "[fd00::53]:54".parse().unwrap(),
                "[fd00::55]:53".parse().unwrap(),
                "[fd00::56]:53".parse().unwrap(),
            ]
        );
        assert!(parse_servers("").unwrap().is_empty());
        let e = parse_servers("10.0.0.53,dns.example.com").unwrap_err();
        assert_eq!(e.entry, "dns.example.com");
        assert!(e.to_string().contains("`dns.example.com` is not a nameserver address"), "{e}");
        assert!(parse_servers("10.0.0.53:99999").is_err());
        assert!(parse_servers("[10.0.0.53]").is_ok_and(|s| s[0].port() == 53));
    }

    #[tokio::test]
    async fn ip_literals_are_returned_without_a_query() {
        // No server listens on port 9 of this unroutable documentation address.
        let r = Resolver::from_setting("192.0.2.1:9").unwrap();
        assert_eq!(r.lookup("127.0.0.1").await.unwrap(), vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.lookup("::1").await.unwrap(), vec!["::1".parse::<IpAddr>().unwrap()]);
        assert!(Resolver::from_setting("").unwrap().servers().is_none());
    }
}
