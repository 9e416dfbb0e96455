//! Property tests: signatures round-trip and reject any change; the flat
//! layout carries exactly the envelope's data.

use hookline_domain::{endpoint::SigningSecret, layout, signing};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 ._@+-]{0,20}".prop_map(Value::String),
        prop::collection::vec("[a-z]{1,8}".prop_map(Value::String), 0..3).prop_map(Value::Array),
    ]
}

/// Objects nested up to three levels with keys of letters only, so joined
/// keys cannot collide (the twelve payloads have that property too).
fn json_object() -> impl Strategy<Value = Value> {
    let leaf = json_leaf();
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop::collection::btree_map("[a-z]{1,6}", inner, 1..4)
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>()))
    })
    .prop_filter("an object", |v| v.is_object())
}

fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                leaves(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out)
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

proptest! {
    #[test]
    fn signatures_verify_and_any_change_breaks_them(
        body in prop::collection::vec(any::<u8>(), 0..512),
        id in "evt_[A-Z0-9]{26}",
        ts in 0i64..4_000_000_000,
        flip in any::<prop::sample::Index>(),
    ) {
        let secret = SigningSecret::generate();
        let sig = signing::sign(&secret, &id, ts, &body);
        prop_assert!(signing::verify(&secret, &id, ts, &body, &sig));
        prop_assert!(!signing::verify(&SigningSecret::generate(), &id, ts, &body, &sig));
        prop_assert!(!signing::verify(&secret, &id, ts + 1, &body, &sig));
        if !body.is_empty() {
            let mut changed = body.clone();
            let i = flip.index(changed.len());
            changed[i] ^= 0x01;
            prop_assert!(!signing::verify(&secret, &id, ts, &changed, &sig));
        }
        // A rotation header verifies with either secret.
        let other = SigningSecret::generate();
        let both = signing::signature_header([&secret, &other], &id, ts, &body);
        prop_assert!(signing::verify(&secret, &id, ts, &body, &both) && signing::verify(&other, &id, ts, &body, &both));
    }

    #[test]
    fn flat_holds_every_leaf_of_the_envelope_and_nothing_else(data in json_object()) {
        let mut flat = Map::new();
        layout::flatten_into("", &data, &mut flat);
        let mut expected = Vec::new();
        leaves("", &data, &mut expected);
        // Empty objects have no leaves; everything else appears once under its joined key.
        prop_assert_eq!(flat.len(), expected.len());
        for (path, value) in expected {
            prop_assert_eq!(flat.get(&path.replace('.', "_")), Some(&value));
        }
    }
}
