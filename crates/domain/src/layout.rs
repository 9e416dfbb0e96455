//! The two body layouts receivers can choose.

use serde_json::{Map, Value, json};

use crate::{endpoint::Layout, events::StoredEvent};

/// The exact bytes POSTed for `event` in `layout`. Deterministic, so every
/// retry and replay sends the same body.
pub fn render(event: &StoredEvent, layout: Layout) -> Vec<u8> {
    let value = match layout {
        Layout::Envelope => json!({
            "type": event.event_type.as_str(),
            "timestamp": event.occurred_at,
            "data": event.data,
        }),
        Layout::Flat => {
            let mut out = Map::new();
            out.insert("type".into(), event.event_type.as_str().into());
            out.insert("timestamp".into(), event.occurred_at.clone().into());
            flatten_into("", &event.data, &mut out);
            Value::Object(out)
        }
    };
    serde_json::to_vec(&value).expect("JSON values serialise")
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
    use super::*;

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
