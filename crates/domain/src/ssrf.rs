//! Which addresses webhooks may go to. Outside dev mode Hookline delivers
//! only to public addresses; operators open chosen ranges with
//! `HOOKLINE_DELIVERY_ALLOW_CIDRS`.
//!
//! The policy follows the IANA IPv4 and IPv6 special-purpose address
//! registries: every block in them is refused except the two whose purpose
//! is to reach ordinary public IPv4 hosts (IPv4-mapped `::ffff:0:0/96` and
//! NAT64's well-known `64:ff9b::/96`), which are judged by the IPv4 address
//! they carry. IPv6 outside global unicast (`2000::/3`) is refused too: IANA
//! has allocated nothing there that a webhook receiver could use, and a
//! private network squatting on it is as internal as `10.0.0.0/8`.
//!
//! Transition forms that carry an IPv4 address (6to4, Teredo, NAT64,
//! IPv4-compatible, -mapped and -translated) are a classic way around a
//! naive guard: `2002:7f00:1::1` is loopback through a 6to4 relay. Each is
//! decoded, and a refusal for a forbidden IPv4 inside names both addresses.
//! 6to4 (`2002::/16`), Teredo (`2001::/32`), IPv4-compatible (`::/96`),
//! IPv4-translated (`::ffff:0:0:0/96`) and NAT64 local-use
//! (`64:ff9b:1::/48`) are refused as a whole even with a public IPv4 inside:
//! they are deprecated or local-use, no receiver needs them, and whether
//! they reach the IPv4 inside depends on relays and translators this check
//! cannot see. The checks work on the parsed address, so every notation
//! (compressed, zero-padded, dotted tail) is judged the same.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// An IPv4 or IPv6 network, e.g. `10.1.0.0/16` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Self { net: IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Self { net: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)), prefix }
    }

    /// Whether `ip` is inside. IPv4-mapped and NAT64 (`64:ff9b::/96`)
    /// addresses count as the IPv4 address they carry, so an allow-list
    /// entry `127.0.0.0/8` also opens `::ffff:127.0.0.1`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_exactly(ip) || canonical(ip).is_some_and(|v4| self.contains_exactly(IpAddr::V4(v4)))
    }

    /// Whether `ip` itself is inside, without looking into IPv6 forms.
    fn contains_exactly(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
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

/// Why a text is not a [`Cidr`]; `cidr` is the entry as written (trimmed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{cidr}` is not an address/prefix like 10.0.0.0/8")]
    Address {
        cidr: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("`{cidr}`: bad prefix")]
    Prefix {
        cidr: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("`{cidr}`: prefix longer than {max}")]
    PrefixTooLong { cidr: String, max: u8 },
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let s = s.trim();
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let net: IpAddr = addr.parse().map_err(|source| CidrError::Address { cidr: s.to_owned(), source })?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix.parse().map_err(|source| CidrError::Prefix { cidr: s.to_owned(), source })?
        };
        if prefix > max {
            return Err(CidrError::PrefixTooLong { cidr: s.to_owned(), max });
        }
        Ok(Self { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The IPv4 address of an IPv4-mapped (`::ffff:a.b.c.d`) or NAT64
/// well-known-prefix (`64:ff9b::a.b.c.d`) address: the two forms that reach
/// an ordinary IPv4 host and are judged by it.
fn canonical(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    match embedded(v6)? {
        (Transition::Mapped | Transition::Nat64, v4) => Some(v4),
        _ => None,
    }
}

/// An IPv6 form that carries an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `::ffff:a.b.c.d` (`::ffff:0:0/96`): the IPv4 host itself, on a dual-stack socket.
    Mapped,
    /// `::a.b.c.d` (`::/96`), deprecated by RFC 4291.
    Compatible,
    /// `::ffff:0:a.b.c.d` (`::ffff:0:0:0/96`), RFC 2765's SIIT form.
    Translated,
    /// `64:ff9b::a.b.c.d` (`64:ff9b::/96`), NAT64's well-known prefix (RFC 6052).
    Nat64,
    /// `2002:AABB:CCDD::/48` (`2002::/16`): the IPv4 address in bits 16-47 (RFC 3056).
    SixToFour,
    /// `2001:0:SSSS:SSSS:…:CCCC:CCCC` (`2001::/32`): the client's IPv4 in
    /// the last 32 bits, inverted (RFC 4380).
    TeredoClient,
    /// The Teredo server's IPv4 address, bits 32-63 of a Teredo address.
    TeredoServer,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mapped => "IPv4-mapped",
            Self::Compatible => "IPv4-compatible",
            Self::Translated => "IPv4-translated",
            Self::Nat64 => "NAT64",
            Self::SixToFour => "6to4",
            Self::TeredoClient => "Teredo",
            Self::TeredoServer => "Teredo (server)",
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn v4_at(v6: Ipv6Addr, byte: usize) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[byte], o[byte + 1], o[byte + 2], o[byte + 3])
}

/// The first IPv4 address `v6` carries, with its form. A Teredo address
/// carries two; [`embedded_all`] returns both.
pub fn embedded(v6: Ipv6Addr) -> Option<(Transition, Ipv4Addr)> {
    embedded_all(v6).into_iter().flatten().next()
}

/// Every IPv4 address `v6` carries (at most two, for Teredo).
pub fn embedded_all(v6: Ipv6Addr) -> [Option<(Transition, Ipv4Addr)>; 2] {
    let s = v6.segments();
    let tail = v4_at(v6, 12);
    let one = |t| [Some((t, tail)), None];
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => one(Transition::Mapped),
        [0, 0, 0, 0, 0xffff, 0, _, _] => one(Transition::Translated),
        // `::` and `::1` are the unspecified and loopback addresses, not forms.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => [None, None],
        [0, 0, 0, 0, 0, 0, _, _] => one(Transition::Compatible),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => one(Transition::Nat64),
        [0x2002, _, _, ..] => [Some((Transition::SixToFour, v4_at(v6, 2))), None],
        [0x2001, 0, ..] => [
            Some((Transition::TeredoClient, Ipv4Addr::from(!u32::from(tail)))),
            Some((Transition::TeredoServer, v4_at(v6, 4))),
        ],
        _ => [None, None],
    }
}

/// A block of a special-purpose registry that deliveries may not reach.
#[derive(Debug, PartialEq, Eq)]
pub struct Range {
    pub net: Cidr,
    /// What it is, to read after "in a": `loopback`, `private network`.
    pub name: &'static str,
}

const fn r(net: Cidr, name: &'static str) -> Range {
    Range { net, name }
}

/// IANA IPv4 special-purpose registry, more specific entries first (the
/// first match names the refusal). All of it is refused, the globally
/// reachable anycast blocks (AS112, AMT, 192.0.0.9/10) included: no
/// webhook receiver lives there.
pub static V4: [Range; 23] = [
    r(Cidr::v4(0, 0, 0, 0, 8), "\"this\" network"),
    r(Cidr::v4(10, 0, 0, 0, 8), "private network"),
    r(Cidr::v4(100, 64, 0, 0, 10), "carrier-grade NAT"),
    r(Cidr::v4(127, 0, 0, 0, 8), "loopback"),
    r(Cidr::v4(169, 254, 169, 254, 32), "cloud metadata service"),
    r(Cidr::v4(169, 254, 0, 0, 16), "link-local"),
    r(Cidr::v4(172, 16, 0, 0, 12), "private network"),
    r(Cidr::v4(192, 0, 0, 0, 29), "DS-Lite (IPv4 service continuity)"),
    r(Cidr::v4(192, 0, 0, 170, 31), "NAT64/DNS64 discovery"),
    r(Cidr::v4(192, 0, 0, 0, 24), "IETF protocol assignments"),
    r(Cidr::v4(192, 0, 2, 0, 24), "documentation"),
    r(Cidr::v4(192, 31, 196, 0, 24), "AS112 anycast"),
    r(Cidr::v4(192, 52, 193, 0, 24), "AMT anycast"),
    r(Cidr::v4(192, 88, 99, 0, 24), "6to4 relay anycast"),
    r(Cidr::v4(192, 168, 0, 0, 16), "private network"),
    r(Cidr::v4(192, 175, 48, 0, 24), "AS112 direct delegation"),
    r(Cidr::v4(198, 18, 0, 0, 15), "benchmarking"),
    r(Cidr::v4(198, 51, 100, 0, 24), "documentation"),
    r(Cidr::v4(203, 0, 113, 0, 24), "documentation"),
    r(Cidr::v4(224, 0, 0, 0, 4), "multicast"),
    r(Cidr::v4(255, 255, 255, 255, 32), "broadcast"),
    r(Cidr::v4(240, 0, 0, 0, 4), "reserved"),
    // Not in the registry: Azure's platform endpoint (WireServer, its DNS
    // and health probes), a public address that answers only inside Azure.
    r(Cidr::v4(168, 63, 129, 16, 32), "cloud platform service"),
];

/// IANA IPv6 special-purpose registry plus the deprecated and transition
/// blocks, more specific entries first. IPv4-mapped and NAT64 `/96`
/// addresses are judged by the IPv4 address they carry instead.
pub static V6: [Range; 21] = [
    r(Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    r(Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    r(Cidr::v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96), "IPv4-translated (RFC 2765)"),
    r(Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96), "IPv4-compatible (deprecated)"),
    r(Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), "NAT64 local-use"),
    r(Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "discard-only"),
    r(Cidr::v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64), "dummy IPv6 prefix"),
    r(Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), "Teredo"),
    r(Cidr::v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48), "benchmarking"),
    r(Cidr::v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28), "ORCHID (deprecated)"),
    r(Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), "IETF protocol assignments"),
    r(Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    r(Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), "6to4"),
    r(Cidr::v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48), "AS112 direct delegation"),
    r(Cidr::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
    r(Cidr::v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16), "SRv6 SIDs"),
    r(Cidr::v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128), "cloud metadata service"),
    r(Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "unique local (private) network"),
    r(Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    r(Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), "site-local (deprecated)"),
    r(Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

/// IPv6 that [`V6`] does not refuse is public when it is in one of these:
/// global unicast, or a form that reaches a (then public) IPv4 host.
const V6_PUBLIC: [Cidr; 3] = [
    Cidr::v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3),
    Cidr::v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
    Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
];

/// The rest of the IPv6 space: reserved by the IETF, allocated to nobody.
pub static V6_RESERVED: Range = r(Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 0), "IETF-reserved (outside 2000::/3)");

/// Why an address is refused. `Display` names the address, the range and,
/// for transition forms, the IPv4 address carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The address is in a refused range.
    InRange { ip: IpAddr, range: &'static Range },
    /// The IPv6 address carries an IPv4 address that is in a refused range.
    Carries { ip: Ipv6Addr, form: Transition, ipv4: Ipv4Addr, range: &'static Range },
}

impl Refusal {
    /// The refused range (for [`Refusal::Carries`], the IPv4 one).
    pub fn range(&self) -> &'static Range {
        match self {
            Self::InRange { range, .. } | Self::Carries { range, .. } => range,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InRange { ip, range } => {
                write!(f, "{ip} is in {} {} range ({})", a(range.name), range.name, range.net)?
            }
            Self::Carries { ip, form, ipv4, range } => write!(
                f,
                "{ip} is {} {form} address carrying {ipv4}, in {} {} range ({})",
                a(form.as_str()),
                a(range.name),
                range.name,
                range.net
            )?,
        }
        f.write_str("; Hookline only delivers to public addresses (HOOKLINE_DELIVERY_ALLOW_CIDRS opens ranges)")
    }
}

impl std::error::Error for Refusal {}

/// The indefinite article for a range or form name.
fn a(name: &str) -> &'static str {
    let vowel = name.starts_with(['a', 'e', 'i', 'o', 'I', 'E', 'A', 'O', 'u']) && !name.starts_with("uni");
    if vowel { "an" } else { "a" }
}

fn first_v4(ip: Ipv4Addr) -> Option<&'static Range> {
    V4.iter().find(|r| r.net.contains_exactly(IpAddr::V4(ip)))
}

/// Why `ip` is not a public address, or `None` if it is.
pub fn refusal(ip: IpAddr) -> Option<Refusal> {
    let v6 = match ip {
        IpAddr::V4(v4) => return first_v4(v4).map(|range| Refusal::InRange { ip, range }),
        IpAddr::V6(v6) => v6,
    };
    for (form, ipv4) in embedded_all(v6).into_iter().flatten() {
        if let Some(range) = first_v4(ipv4) {
            return Some(Refusal::Carries { ip: v6, form, ipv4, range });
        }
    }
    let range = match V6.iter().find(|r| r.net.contains_exactly(ip)) {
        Some(range) => range,
        None if V6_PUBLIC.iter().any(|net| net.contains_exactly(ip)) => return None,
        None => &V6_RESERVED,
    };
    Some(Refusal::InRange { ip, range })
}

/// The non-public range `ip` falls in, if any.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    refusal(ip).map(|r| r.range().name)
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
    /// `Err` names the address and the range, e.g. `10.0.0.7 is in a
    /// private network range (10.0.0.0/8); ...`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.allow_all || self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        refusal(ip).map_or(Ok(()), Err)
    }

    pub fn parse_allow_list(s: &str) -> Result<Vec<Cidr>, CidrError> {
        s.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refused range: its network, an address inside (refused, named
    /// by this range), the nearest address just outside, and what refuses
    /// that neighbour (`None`: nothing, it is public).
    const TABLE: &[(&str, &str, &str, Option<&str>)] = &[
        ("0.0.0.0/8", "0.255.255.255", "1.0.0.0", None),
        ("10.0.0.0/8", "10.255.255.255", "11.0.0.0", None),
        ("100.64.0.0/10", "100.127.255.255", "100.128.0.0", None),
        ("127.0.0.0/8", "127.0.0.1", "128.0.0.0", None),
        ("169.254.169.254/32", "169.254.169.254", "169.254.169.253", Some("169.254.0.0/16")),
        ("169.254.0.0/16", "169.254.0.1", "169.255.0.0", None),
        ("172.16.0.0/12", "172.31.255.255", "172.32.0.0", None),
        ("192.0.0.0/29", "192.0.0.7", "192.0.0.8", Some("192.0.0.0/24")),
        ("192.0.0.170/31", "192.0.0.171", "192.0.0.172", Some("192.0.0.0/24")),
        ("192.0.0.0/24", "192.0.0.9", "192.0.1.0", None),
        ("192.0.2.0/24", "192.0.2.255", "192.0.3.0", None),
        ("192.31.196.0/24", "192.31.196.1", "192.31.197.0", None),
        ("192.52.193.0/24", "192.52.193.1", "192.52.194.0", None),
        ("192.88.99.0/24", "192.88.99.1", "192.88.100.0", None),
        ("192.168.0.0/16", "192.168.255.255", "192.169.0.0", None),
        ("192.175.48.0/24", "192.175.48.6", "192.175.49.0", None),
        ("198.18.0.0/15", "198.19.255.255", "198.20.0.0", None),
        ("198.51.100.0/24", "198.51.100.7", "198.51.101.0", None),
        ("203.0.113.0/24", "203.0.113.255", "203.0.114.0", None),
        ("224.0.0.0/4", "239.255.255.250", "223.255.255.255", None),
        ("255.255.255.255/32", "255.255.255.255", "255.255.255.254", Some("240.0.0.0/4")),
        ("240.0.0.0/4", "240.0.0.1", "239.255.255.255", Some("224.0.0.0/4")),
        ("168.63.129.16/32", "168.63.129.16", "168.63.129.17", None),
        // `::2` is IPv4-compatible, carrying 0.0.0.2.
        ("::/128", "::", "::2", Some("0.0.0.0/8")),
        ("::1/128", "::1", "::2", Some("0.0.0.0/8")),
        // Refused as a whole, even carrying the public 8.8.8.8.
        ("::ffff:0:0:0/96", "::ffff:0:808:808", "::ffff:1:0:0", Some("::/0")),
        ("::/96", "::808:808", "::1:0:0", Some("::/0")),
        ("64:ff9b:1::/48", "64:ff9b:1::808:808", "64:ff9b:2::", Some("::/0")),
        ("100::/64", "100::1", "100:0:0:2::", Some("::/0")),
        ("100:0:0:1::/64", "100:0:0:1::1", "100:0:0:2::", Some("::/0")),
        // Teredo server 65.54.227.120, client 8.8.8.8 (inverted in the last 32 bits).
        ("2001::/32", "2001:0:4136:e378:8000:63bf:f7f7:f7f7", "2001:1::4", Some("2001::/23")),
        ("2001:2::/48", "2001:2::1", "2001:2:1::", Some("2001::/23")),
        ("2001:10::/28", "2001:1f::1", "2001:20::", Some("2001::/23")),
        ("2001::/23", "2001:1::1", "2001:200::", None),
        ("2001:db8::/32", "2001:db8::1", "2001:db9::", None),
        ("2002::/16", "2002:808:808::1", "2003::", None),
        ("2620:4f:8000::/48", "2620:4f:8000::1", "2620:4f:8001::", None),
        ("3fff::/20", "3fff:fff::1", "3fff:1000::", None),
        ("5f00::/16", "5f00::1", "5f01::", Some("::/0")),
        ("fd00:ec2::254/128", "fd00:ec2::254", "fd00:ec2::255", Some("fc00::/7")),
        ("fc00::/7", "fd12:3456::1", "fe00::", Some("::/0")),
        ("fe80::/10", "fe80::1", "fe7f:ffff::", Some("::/0")),
        ("fec0::/10", "fec0::1", "ff00::", Some("ff00::/8")),
        ("ff00::/8", "ff02::1", "feff:ffff::", Some("fec0::/10")),
        // The rest of the IPv6 space outside global unicast.
        ("::/0", "4000::1", "2000::1", None),
    ];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s} parses"))
    }

    #[test]
    fn every_range_refuses_an_address_inside_and_no_address_just_outside() {
        let policy = AddressPolicy::default();
        for &(net, inside, outside, neighbour) in TABLE {
            let net: Cidr = net.parse().unwrap();
            let refused = policy.check(ip(inside)).expect_err(inside);
            assert_eq!(refused.range().net, net, "{inside} is refused as {refused}");
            assert!(refused.to_string().contains("public addresses"), "{refused}");
            match (policy.check(ip(outside)), neighbour) {
                (Ok(()), None) => {}
                (Err(e), Some(other)) => assert_eq!(e.range().net, other.parse().unwrap(), "{outside}: {e}"),
                (got, want) => panic!("{outside} (just outside {net}): got {got:?}, want refusal by {want:?}"),
            }
        }
    }

    #[test]
    fn the_table_test_covers_every_range() {
        let listed: Vec<Cidr> = TABLE.iter().map(|(net, ..)| net.parse().unwrap()).collect();
        for range in V4.iter().chain(&V6).chain([&V6_RESERVED]) {
            assert!(listed.contains(&range.net), "{} ({}) has no row in TABLE", range.net, range.name);
        }
    }

    #[test]
    fn transition_forms_carrying_a_refused_ipv4_name_both_addresses() {
        for (v6, form, v4, range) in [
            ("2002:7f00:1::1", "6to4", "127.0.0.1", "loopback"),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo", "127.0.0.1", "loopback"),
            ("2001:0:a9fe:a9fe::f7f7:f7f7", "Teredo (server)", "169.254.169.254", "cloud metadata service"),
            ("::ffff:10.0.0.1", "IPv4-mapped", "10.0.0.1", "private network"),
            ("::ffff:0:a9fe:a9fe", "IPv4-translated", "169.254.169.254", "cloud metadata service"),
            ("::127.0.0.2", "IPv4-compatible", "127.0.0.2", "loopback"),
            ("64:ff9b::c0a8:101", "NAT64", "192.168.1.1", "private network"),
        ] {
            let e = AddressPolicy::default().check(ip(v6)).expect_err(v6);
            let text = e.to_string();
            let canonical = ip(v6).to_string();
            assert!(
                text.starts_with(&format!(
                    "{canonical} is {} {form} address carrying {v4}, in a {range} range",
                    a(form)
                )),
                "{text}"
            );
        }
        assert!(
            AddressPolicy::default()
                .check(ip("2002:7f00:1::1"))
                .unwrap_err()
                .to_string()
                .starts_with("2002:7f00:1::1 is a 6to4 address carrying 127.0.0.1, in a loopback range (127.0.0.0/8)")
        );
    }

    #[test]
    fn public_addresses_and_their_mapped_and_nat64_forms_pass() {
        for good in [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:81b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(refusal(ip(good)).is_none(), "{good} is public: {:?}", refusal(ip(good)));
        }
    }

    #[test]
    fn allow_list_and_dev_mode_open_ranges() {
        let p = AddressPolicy {
            allow_all: false,
            allow: AddressPolicy::parse_allow_list("127.0.0.0/8, fd00::/8, 2002::/16").unwrap(),
        };
        assert!(p.check(ip("127.0.0.1")).is_ok());
        assert!(p.check(ip("::ffff:127.0.0.1")).is_ok(), "the mapped form of an opened address");
        assert!(p.check(ip("fd00::5")).is_ok());
        assert!(p.check(ip("2002:7f00:1::1")).is_ok(), "6to4 opened as a range");
        assert!(p.check(ip("10.0.0.1")).unwrap_err().to_string().contains("private network"));
        assert!(AddressPolicy::default().check(ip("2002:7f00:1::1")).is_err());
        assert!(AddressPolicy { allow_all: true, allow: vec![] }.check(ip("127.0.0.1")).is_ok());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }
}
