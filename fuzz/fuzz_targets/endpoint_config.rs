//! Endpoint configuration as clients send it (URL, auth header, event types,
//! description, signing secret) and as the config stream stores it (JSON).
//! Parsers must not panic, and a parsed value must print back to what it
//! parsed, so nothing is silently rewritten.
#![no_main]

use hookline_domain::endpoint::{
    AuthHeader, EndpointConfig, EndpointUrl, SigningSecret, parse_description, parse_event_types,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    // Fields are separated by newlines so one input exercises every parser.
    let mut parts = text.split('\n');
    let mut next = || parts.next().unwrap_or("");
    let url = next();
    if let Ok(parsed) = EndpointUrl::parse(url) {
        assert_eq!(parsed.as_str(), url);
        let (host, _port) = parsed.host_port();
        assert!(!host.is_empty());
    }
    let (name, value) = (next(), next());
    if let Ok(h) = AuthHeader::parse(name, value) {
        assert_eq!(h.name(), name);
        assert_eq!(h.value().expose(), value);
        assert_eq!(format!("{:?}", h.value()), "********", "a secret's Debug must mask it");
    }
    let types: Vec<String> = next().split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if let Ok(parsed) = parse_event_types(&types) {
        assert!(parsed.len() <= types.len());
    }
    let _ = parse_description(next());
    if let Ok(s) = SigningSecret::parse(next()) {
        assert!(!s.key().is_empty());
    }
    // The stored form: any JSON the config stream could hand back.
    if let Ok(config) = serde_json::from_slice::<EndpointConfig>(bytes) {
        let json = serde_json::to_vec(&config).unwrap();
        let again: EndpointConfig = serde_json::from_slice(&json).expect("a stored endpoint re-reads");
        assert_eq!(again, config);
    }
});
