//! Property tests of the SSRF guard: no private, loopback, link-local,
//! "this network", carrier-grade NAT or metadata IPv4 address gets through
//! an IPv6 transition form (mapped, compatible, translated, NAT64, 6to4,
//! Teredo client and server), whatever the notation (compressed, zero
//! padded, dotted tail, upper case): not as a parsed address, not as the
//! host of a URL at send time (`sender::target`), not at save time
//! (`subscriptions::target::check_target`). IPv4 hosts in the URL parser's
//! other notations (`0x7f.1`, `2130706433`, `0177.0.0.1`) are tried too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hookline_delivery::sender::target;
use hookline_domain::ssrf::{AddressPolicy, Refusal, refusal};
use hookline_subscriptions::target::check_target;
use proptest::prelude::*;

/// An address inside `net/prefix`, from random bits.
fn inside(net: [u8; 4], prefix: u32, bits: u32) -> Ipv4Addr {
    let host_mask = u32::MAX.checked_shr(prefix).unwrap_or(0);
    Ipv4Addr::from((u32::from(Ipv4Addr::from(net)) & !host_mask) | (bits & host_mask))
}

fn internal_v4() -> impl Strategy<Value = Ipv4Addr> {
    let nets: [([u8; 4], u32); 8] = [
        ([10, 0, 0, 0], 8),
        ([172, 16, 0, 0], 12),
        ([192, 168, 0, 0], 16),
        ([127, 0, 0, 0], 8),
        ([169, 254, 0, 0], 16),
        ([169, 254, 169, 254], 32),
        ([100, 64, 0, 0], 10),
        ([0, 0, 0, 0], 8),
    ];
    (0..nets.len(), any::<u32>()).prop_map(move |(i, bits)| inside(nets[i].0, nets[i].1, bits))
}

#[derive(Debug, Clone, Copy)]
enum Form {
    Mapped,
    Compatible,
    Translated,
    Nat64,
    SixToFour,
    TeredoClient,
    TeredoServer,
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        Just(Form::Mapped),
        Just(Form::Compatible),
        Just(Form::Translated),
        Just(Form::Nat64),
        Just(Form::SixToFour),
        Just(Form::TeredoClient),
        Just(Form::TeredoServer),
    ]
}

/// `v4` carried in `form`; `noise` fills the bits the form leaves free.
fn wrap(form: Form, v4: Ipv4Addr, noise: [u16; 5]) -> Ipv6Addr {
    let [hi, lo] = [(u32::from(v4) >> 16) as u16, u32::from(v4) as u16];
    let public_client = !u32::from(Ipv4Addr::new(8, 8, 8, 8));
    let [n0, n1, n2, n3, n4] = noise;
    match form {
        Form::Mapped => Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, hi, lo),
        Form::Compatible => Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo),
        Form::Translated => Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo),
        Form::Nat64 => Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
        Form::SixToFour => Ipv6Addr::new(0x2002, hi, lo, n0, n1, n2, n3, n4),
        Form::TeredoClient => Ipv6Addr::new(0x2001, 0, n0, n1, n2, n3, !hi, !lo),
        Form::TeredoServer => {
            Ipv6Addr::new(0x2001, 0, hi, lo, n2, n3, (public_client >> 16) as u16, public_client as u16)
        }
    }
}

/// Compress the longest run (two or more) of zero pieces into `::`.
fn compress(pieces: &[String], zero: impl Fn(&str) -> bool) -> String {
    let (mut best, mut run) = ((0, 0), (0, 0));
    for (i, p) in pieces.iter().enumerate() {
        if zero(p) {
            run = if run.1 == 0 || run.0 + run.1 != i { (i, 1) } else { (run.0, run.1 + 1) };
            if run.1 > best.1 {
                best = run;
            }
        }
    }
    if best.1 < 2 {
        return pieces.join(":");
    }
    format!("{}::{}", pieces[..best.0].join(":"), pieces[best.0 + best.1..].join(":"))
}

/// The same address in every notation a config file or URL may carry.
fn notations(ip: Ipv6Addr) -> Vec<String> {
    let s = ip.segments();
    let o = ip.octets();
    let dotted = format!("{}.{}.{}.{}", o[12], o[13], o[14], o[15]);
    let short: Vec<String> = s.iter().map(|p| format!("{p:x}")).collect();
    let padded: Vec<String> = s.iter().map(|p| format!("{p:04x}")).collect();
    let with_tail = |pieces: &[String], compressed: bool| {
        let head = if compressed {
            compress(&pieces[..6], |p| p.trim_start_matches('0').is_empty())
        } else {
            pieces[..6].join(":")
        };
        if head.ends_with("::") { format!("{head}{dotted}") } else { format!("{head}:{dotted}") }
    };
    vec![
        ip.to_string(),
        ip.to_string().to_uppercase(),
        padded.join(":"),
        padded.join(":").to_uppercase(),
        compress(&short, |p| p == "0"),
        with_tail(&short, false),
        with_tail(&short, true),
        with_tail(&padded, false),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_internal_ipv4_passes_through_a_transition_form_in_any_notation(
        v4 in internal_v4(),
        form in form(),
        noise in any::<[u16; 5]>(),
    ) {
        let policy = AddressPolicy::default();
        let v6 = wrap(form, v4, noise);
        let rt = runtime();
        for text in notations(v6) {
            let parsed: Ipv6Addr = text.parse().unwrap_or_else(|_| panic!("{text} parses"));
            prop_assert_eq!(parsed, v6, "{} reads back", text);
            let why = refusal(IpAddr::V6(parsed));
            match &why {
                Some(Refusal::Carries { ipv4, .. }) => prop_assert_eq!(*ipv4, v4, "{}: {:?}", text, why),
                // `::` and `::1` are IPv4-compatible 0.0.0.0 and 0.0.0.1 by their bits.
                Some(Refusal::InRange { .. }) => prop_assert!(matches!(form, Form::Compatible) && v4.octets()[..3] == [0, 0, 0], "{}: {:?}", text, why),
                None => prop_assert!(false, "{} passed", text),
            }
            let url = format!("http://[{text}]:8080/hook");
            prop_assert!(target(&url, &policy).is_err(), "{} passed the send-time check", url);
            let saved = rt.block_on(check_target(&url, &policy, &hookline_dns::Resolver::system()));
            prop_assert!(saved.as_ref().is_err_and(|e| e.field == "url"), "{} passed the save-time check: {:?}", url, saved);
        }
    }

    #[test]
    fn no_internal_ipv4_passes_in_the_url_parsers_other_notations(v4 in internal_v4()) {
        let policy = AddressPolicy::default();
        let [a, b, c, d] = v4.octets();
        let n = u32::from(v4);
        let rt = runtime();
        for host in [
            format!("{n}"),
            format!("0x{n:x}"),
            format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
            format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
            format!("{a}.{}", (u32::from(b) << 16) | (u32::from(c) << 8) | u32::from(d)),
            format!("{a}.{b}.{}", (u32::from(c) << 8) | u32::from(d)),
        ] {
            let url = format!("http://{host}/hook");
            prop_assert!(target(&url, &policy).is_err(), "{} passed the send-time check", url);
            let saved = rt.block_on(check_target(&url, &policy, &hookline_dns::Resolver::system()));
            prop_assert!(saved.is_err(), "{} passed the save-time check", url);
        }
    }
}

#[test]
fn the_issue_examples_are_refused_at_send_and_save_time() {
    let policy = AddressPolicy::default();
    let rt = runtime();
    for (url, says) in [
        ("http://[2002:7f00:1::1]/x", "6to4 address carrying 127.0.0.1, in a loopback range"),
        ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x", "Teredo address carrying 127.0.0.1, in a loopback range"),
        ("http://[::ffff:127.0.0.1]/x", "IPv4-mapped address carrying 127.0.0.1"),
        (
            "http://[64:ff9b::169.254.169.254]/x",
            "NAT64 address carrying 169.254.169.254, in a cloud metadata service range",
        ),
    ] {
        let sent = target(url, &policy).unwrap_err().to_string();
        assert!(sent.contains(says), "{url}: {sent}");
        let saved = rt.block_on(check_target(url, &policy, &hookline_dns::Resolver::system())).unwrap_err();
        assert_eq!(saved.field, "url");
        assert!(saved.rule.contains(says), "{url}: {saved}");
    }
    for url in ["http://93.184.216.34/x", "http://[2606:4700:4700::1111]/x", "http://[::ffff:8.8.8.8]/x"] {
        assert!(target(url, &policy).is_ok(), "{url}");
        assert!(rt.block_on(check_target(url, &policy, &hookline_dns::Resolver::system())).is_ok(), "{url}");
    }
}
