//! Which addresses webhooks may go to. Outside dev mode Hookline delivers
//! only to public addresses; operators open chosen ranges with
//! `HOOKLINE_DELIVERY_ALLOW_CIDRS`.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
};

/// An IPv4 or IPv6 network, e.g. `10.1.0.0/16` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask(u32::from(n).into(), u32::from(a).into(), self.prefix, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask(u128::from(n), u128::from(a), self.prefix, 128),
            _ => false,
        }
    }
}

fn mask(net: u128, addr: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (net >> shift) == (addr >> shift)
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let net: IpAddr = addr.parse().map_err(|_| format!("`{s}` is not an address/prefix like 10.0.0.0/8"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() { max } else { prefix.parse().map_err(|_| format!("`{s}`: bad prefix"))? };
        if prefix > max {
            return Err(format!("`{s}`: prefix longer than {max}"));
        }
        Ok(Self { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) addresses
/// are judged by the IPv4 address inside.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let seg = v6.segments();
            if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

const V4: [(&str, &str); 17] = [
    ("0.0.0.0/8", "\"this\" network"),
    ("10.0.0.0/8", "private network"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.169.254/32", "cloud metadata service"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private network"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay"),
    ("192.168.0.0/16", "private network"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "broadcast"),
];

const V6: [(&str, &str); 9] = [
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fd00:ec2::254/128", "cloud metadata service"),
    ("fc00::/7", "unique local (private) network"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
    ("2001:db8::/32", "documentation"),
    ("100::/64", "discard"),
];

/// The non-public range `ip` falls in, if any.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    let ip = canonical(ip);
    let table: &[(&str, &str)] = if ip.is_ipv4() { &V4 } else { &V6 };
    table
        .iter()
        .find(|(net, _)| net.parse::<Cidr>().expect("built-in ranges parse").contains(ip))
        .map(|(_, name)| *name)
}

/// What the delivery side may connect to.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Dev mode: everything, loopback included.
    pub allow_all: bool,
    /// Ranges opened although not public.
    pub allow: Vec<Cidr>,
}

impl AddressPolicy {
    /// `Err` names the range, e.g. `10.0.0.7 is in a private network range`.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        if self.allow_all || self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        match forbidden_range(ip) {
            Some(range) => Err(format!(
                "{ip} is in a {range} range; Hookline only delivers to public addresses (HOOKLINE_DELIVERY_ALLOW_CIDRS opens ranges)"
            )),
            None => Ok(()),
        }
    }

    pub fn parse_allow_list(s: &str) -> Result<Vec<Cidr>, String> {
        s.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_non_public_range_is_refused() {
        let p = AddressPolicy::default();
        for bad in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "fd00:ec2::254",
            "2001:db8::1",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(p.check(ip).is_err(), "{bad} must be refused");
        }
        for good in ["93.184.216.34", "1.1.1.1", "172.32.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(p.check(good.parse().unwrap()).is_ok(), "{good} is public");
        }
    }

    #[test]
    fn allow_list_and_dev_mode_open_ranges() {
        let p = AddressPolicy {
            allow_all: false,
            allow: AddressPolicy::parse_allow_list("127.0.0.0/8, fd00::/8").unwrap(),
        };
        assert!(p.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("fd00::5".parse().unwrap()).is_ok());
        assert!(p.check("10.0.0.1".parse().unwrap()).unwrap_err().contains("private network"));
        assert!(AddressPolicy { allow_all: true, allow: vec![] }.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }
}
