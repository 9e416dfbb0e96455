//! The two body layouts receivers can choose.

use serde::Serialize;
use serde_json::{Map, Value, value::RawValue};

use crate::{endpoint::Layout, events::StoredEvent};

/// `{"type", "timestamp", "data"}` with the stored data copied as it is.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: &'a str,
    data: &'a RawValue,
}

/// The exact bytes POSTed for `event` in `layout`. Deterministic, so every
/// retry and replay sends the same body.
pub fn render(event: &StoredEvent, layout: Layout) -> Vec<u8> {
    match layout {
        Layout::Envelope => {
            // Sized once: the envelope is the data plus a few dozen bytes.
            let mut body = Vec::with_capacity(event.data.get().len() + 128);
            serde_json::to_writer(
                &mut body,
                &Envelope {
                    event_type: event.event_type.as_str(),
                    timestamp: event.occurred_at.as_str(),
                    data: &event.data,
                },
            )
            .map(|()| body)
        }
        Layout::Flat => {
            let data: Value = serde_json::from_str(event.data.get()).expect("stored data is JSON");
            let mut out = Map::new();
            out.insert("type".into(), event.event_type.as_str().into());
            out.insert("timestamp".into(), event.occurred_at.as_str().into());
            flatten_into("", &data, &mut out);
            serde_json::to_vec(&Value::Object(out))
        }
    }
    .expect("JSON values serialise")
}

/// Flatten nested objects into `parent_child` keys. Arrays stay arrays (of
/// scalars, in the twelve payloads), so lists such as `changed_fields` survive.
pub fn flatten_into(prefix: &str, value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}_{k}") };
                flatten_into(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The envelope copies the stored data as text; it must be the same bytes
    /// as printing the parsed tree, so a body recorded either way compares equal.
    #[test]
    fn envelope_of_raw_data_equals_the_printed_tree() {
        let data = json!({"customer": {"id": "c1", "name": "Zoë \"Q\" <x>", "n": 1.5e3}, "tags": ["a", 1, null]});
        let event = StoredEvent {
            id: crate::ids::EventId::generate(),
            tenant_id: crate::ids::TenantId::parse("acme").unwrap(),
            event_type: crate::event_type::EventType::CustomerCreated,
            occurred_at: "2026-11-29T10:00:00Z".parse().unwrap(),
            received_at: "2026-11-29T10:00:01Z".parse().unwrap(),
            idempotency_key: None,
            data: serde_json::value::to_raw_value(&data).unwrap(),
            test: false,
        };
        // Through the stream and back, as fan-out and workers see it.
        let stored: StoredEvent = serde_json::from_slice(&serde_json::to_vec(&event).unwrap()).unwrap();
        let tree = json!({"type": "customer.created", "timestamp": "2026-11-29T10:00:00Z", "data": data});
        assert_eq!(render(&stored, Layout::Envelope), serde_json::to_vec(&tree).unwrap());
        let flat: Value = serde_json::from_slice(&render(&stored, Layout::Flat)).unwrap();
        assert_eq!(flat["customer_name"], "Zoë \"Q\" <x>");
    }

    #[test]
    fn flat_joins_nested_keys() {
        let mut out = Map::new();
        flatten_into(
            "",
            &json!({"customer": {"id": "c1", "email": "a@b.c"}, "channel": "widget", "changed_fields": ["x"]}),
            &mut out,
        );
        assert_eq!(
            Value::Object(out),
            json!({"customer_id": "c1", "customer_email": "a@b.c", "channel": "widget", "changed_fields": ["x"]})
        );
    }
}
