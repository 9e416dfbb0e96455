//! `schemas/` and `examples/events/` stay in step with the types:
//! every example parses, and every committed schema equals the generated one.
//! Regenerate the schemas with `HOOKLINE_BLESS=1 cargo test -p hookline-domain`.

use std::path::PathBuf;

use hookline_domain::{
    event_type::EventType,
    events::{NewEvent, Payload},
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_example_parses_as_its_type() {
    for t in EventType::ALL {
        let path = root().join(format!("examples/events/{}.json", t.as_str()));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let event = NewEvent::from_json(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(event.payload.event_type(), t);
    }
}

#[test]
fn committed_schemas_match_the_types() {
    let bless = std::env::var_os("HOOKLINE_BLESS").is_some();
    for t in EventType::ALL {
        let path = root().join(format!("schemas/{}.json", t.as_str()));
        let generated = serde_json::to_string_pretty(&Payload::json_schema(t)).unwrap() + "\n";
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: run HOOKLINE_BLESS=1 cargo test -p hookline-domain",
            path.display()
        );
    }
}

#[test]
fn schemas_require_what_the_parser_requires() {
    let schema = Payload::json_schema(EventType::AppointmentBookingCreated);
    let text = schema.to_string();
    assert!(text.contains("\"required\""), "{text}");
    assert!(text.contains("last_name"));
    assert_eq!(schema["properties"]["type"]["const"], "appointment.booking.created");
}
