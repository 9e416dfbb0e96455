//! The flat layout flattener over arbitrary JSON data: no panic, no nested
//! objects left, and every scalar of the input lands under some key.
#![no_main]

use hookline_domain::layout::flatten_into;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fn scalars(v: &Value) -> usize {
    match v {
        Value::Object(o) if o.is_empty() => 0,
        Value::Object(o) => o.values().map(scalars).sum(),
        _ => 1,
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else { return };
    let mut out = Map::new();
    flatten_into("", &value, &mut out);
    assert!(out.values().all(|v| !v.is_object()), "flat output holds no objects");
    // Keys can collide (`a_b` next to `a: {b}`), so at most, never more.
    assert!(out.len() <= scalars(&value).max(1));
    serde_json::to_vec(&Value::Object(out)).expect("flat output serialises");
});
