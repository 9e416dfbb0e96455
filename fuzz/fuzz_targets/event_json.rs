//! Producer JSON events: the parser and validator ingest runs on every
//! gRPC `Publish` and NATS intake message. Whatever the bytes, parsing must
//! not panic; an accepted event must render in both layouts and parse back
//! to the same event.
#![no_main]

use hookline_domain::{
    endpoint::Layout,
    events::{NewEvent, StoredEvent},
    ids::TenantId,
    layout,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let event = match NewEvent::from_json(bytes) {
        Ok(event) => event,
        Err(e) => {
            assert!(!e.rule.is_empty(), "an error must name its rule");
            return;
        }
    };
    let tenant = TenantId::parse("fuzz").unwrap();
    let stored = StoredEvent::new(tenant, event.clone());
    for l in [Layout::Envelope, Layout::Flat] {
        let body = layout::render(&stored, l);
        serde_json::from_slice::<serde_json::Value>(&body).expect("rendered bodies are JSON");
    }
    // What was accepted survives a round trip through its canonical form.
    let mut again = serde_json::json!({
        "type": event.payload.event_type().as_str(),
        "data": event.payload.to_json(),
    });
    if let Some(k) = &event.idempotency_key {
        again["idempotency_key"] = k.as_str().into();
    }
    if let Some(t) = &event.occurred_at {
        again["occurred_at"] = serde_json::to_value(t).unwrap();
    }
    let reparsed = NewEvent::from_value(again).expect("an accepted event re-parses");
    assert_eq!(reparsed, event);
});
