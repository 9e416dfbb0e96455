//! Payload filters: conditions on an event's `data` that an endpoint's
//! events must all meet to be delivered to it.
//!
//! A [`Condition`] names a field by its dotted path into `data`
//! (`customer.email`, `appointment.location.kind`) and tests it with one
//! [`Operator`]: equal to a value, one of a few values, or present. An
//! endpoint's conditions AND together; an event that fails one is not
//! delivered to that endpoint and leaves no delivery.
//!
//! Conditions are parsed once (when a request or a config event is read)
//! into this form, so fan-out only walks the path and compares: nothing is
//! parsed or allocated per event. [`check_against_schemas`] holds a save
//! to the event types' JSON Schemas: the path must be a field of each
//! subscribed type (of at least one when the endpoint takes every type)
//! and the values must have the field's type (and be among its allowed
//! values when the schema lists them).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{FieldError, event_type::EventType, events::Payload};

/// Conditions an endpoint may have.
pub const MAX_CONDITIONS: usize = 10;
/// Values an `in` condition may list.
pub const MAX_VALUES: usize = 20;
/// Characters of a path.
pub const MAX_PATH_LEN: usize = 256;
/// Segments of a path (`a.b.c` has three).
pub const MAX_PATH_DEPTH: usize = 8;
/// Characters of a string value.
pub const MAX_VALUE_LEN: usize = 1024;

/// A JSON scalar a field is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Number(serde_json::Number),
    String(String),
}

impl Scalar {
    /// Parse one value given as JSON text (`"widget"`, `12`, `true`).
    pub fn parse_json(text: &str) -> Result<Self, FieldError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|_| FieldError::new("", "must be a JSON scalar: a quoted string, a number, true or false"))?;
        Self::from_value(value)
    }

    fn from_value(value: Value) -> Result<Self, FieldError> {
        match value {
            Value::Bool(b) => Ok(Scalar::Bool(b)),
            Value::Number(n) => Ok(Scalar::Number(n)),
            Value::String(s) if s.chars().count() > MAX_VALUE_LEN => {
                Err(FieldError::new("", format!("must be at most {MAX_VALUE_LEN} characters")))
            }
            Value::String(s) => Ok(Scalar::String(s)),
            Value::Null => Err(FieldError::new("", "must not be null (use the `exists` operator to test presence)")),
            Value::Array(_) | Value::Object(_) => {
                Err(FieldError::new("", "must be a JSON scalar: a quoted string, a number, true or false"))
            }
        }
    }

    /// The value as JSON text, as the API shows it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("scalars serialise")
    }

    /// Whether a field's value equals this one. Numbers compare by value
    /// (`2` equals `2.0`); strings exactly, case included.
    fn matches(&self, field: &Value) -> bool {
        match (self, field) {
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            (Scalar::String(a), Value::String(b)) => a == b,
            (Scalar::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
                (Some(a), Some(b)) => a == b,
                _ => a.as_f64() == b.as_f64(),
            },
            _ => false,
        }
    }

    /// The JSON Schema type names this value belongs to.
    fn json_type(&self) -> &'static str {
        match self {
            Scalar::Bool(_) => "boolean",
            Scalar::Number(n) if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
            Scalar::Number(_) => "number",
            Scalar::String(_) => "string",
        }
    }

    fn as_value(&self) -> Value {
        serde_json::to_value(self).expect("scalars serialise")
    }
}

/// How a condition tests its field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operator {
    /// The field equals the value.
    Equals { value: Scalar },
    /// The field equals one of the values.
    In { values: Vec<Scalar> },
    /// The field is present and not null.
    Exists,
}

impl Operator {
    pub fn name(&self) -> &'static str {
        match self {
            Operator::Equals { .. } => "equals",
            Operator::In { .. } => "in",
            Operator::Exists => "exists",
        }
    }

    /// The values the operator compares with (none for `exists`).
    pub fn values(&self) -> &[Scalar] {
        match self {
            Operator::Equals { value } => std::slice::from_ref(value),
            Operator::In { values } => values,
            Operator::Exists => &[],
        }
    }
}

/// The operator a request names, before its values are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorKind {
    Equals,
    In,
    Exists,
}

/// One condition on a field of `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    path: String,
    #[serde(flatten)]
    op: Operator,
}

impl Condition {
    /// A condition from its wire parts: the path, the operator and the
    /// values as JSON text. Errors name `path`, `operator` or `values[i]`
    /// (callers put them under `filters[n]`).
    pub fn parse(path: &str, kind: OperatorKind, values: &[String]) -> Result<Self, FieldError> {
        let path = parse_path(path).map_err(|e| e.under("path"))?;
        let scalars = || {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| Scalar::parse_json(v).map_err(|e| e.under(&format!("values[{i}]"))))
                .collect::<Result<Vec<_>, _>>()
        };
        let op = match kind {
            OperatorKind::Equals if values.len() != 1 => {
                return Err(FieldError::new("values", "must hold exactly one value for `equals`"));
            }
            OperatorKind::Equals => Operator::Equals { value: scalars()?.remove(0) },
            OperatorKind::In if values.is_empty() => {
                return Err(FieldError::new("values", "must hold at least one value for `in`"));
            }
            OperatorKind::In if values.len() > MAX_VALUES => {
                return Err(FieldError::new("values", format!("must hold at most {MAX_VALUES} values for `in`")));
            }
            OperatorKind::In => Operator::In { values: scalars()? },
            OperatorKind::Exists if !values.is_empty() => {
                return Err(FieldError::new("values", "must be empty for `exists`"));
            }
            OperatorKind::Exists => Operator::Exists,
        };
        Ok(Self { path, op })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn operator(&self) -> &Operator {
        &self.op
    }

    /// Whether `data` (an event's payload) meets the condition. A field
    /// that is missing or null meets none of the operators.
    pub fn matches(&self, data: &Value) -> bool {
        let field = self.path.split('.').try_fold(data, |v, segment| v.get(segment));
        let Some(field) = field.filter(|f| !f.is_null()) else { return false };
        match &self.op {
            Operator::Equals { value } => value.matches(field),
            Operator::In { values } => values.iter().any(|v| v.matches(field)),
            Operator::Exists => true,
        }
    }
}

fn parse_path(path: &str) -> Result<String, FieldError> {
    if path.is_empty() {
        return Err(FieldError::new("", "is required: a dotted path into the event's data, e.g. `customer.email`"));
    }
    if path.chars().count() > MAX_PATH_LEN {
        return Err(FieldError::new("", format!("must be at most {MAX_PATH_LEN} characters")));
    }
    let segments: Vec<&str> = path.split('.').collect();
    if segments.len() > MAX_PATH_DEPTH {
        return Err(FieldError::new("", format!("must have at most {MAX_PATH_DEPTH} segments")));
    }
    if let Some(bad) =
        segments.iter().find(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return Err(FieldError::new(
            "",
            format!("segment `{bad}` must be field name: letters, digits and `_`, joined by `.`"),
        ));
    }
    Ok(path.to_owned())
}

/// Parse a request's conditions; errors name `filters[n].<field>`.
pub fn parse_conditions<'a, I>(conditions: I) -> Result<Vec<Condition>, FieldError>
where
    I: IntoIterator<Item = Result<(&'a str, OperatorKind, &'a [String]), FieldError>>,
{
    let mut parsed = Vec::new();
    for (i, c) in conditions.into_iter().enumerate() {
        let under = format!("filters[{i}]");
        if i == MAX_CONDITIONS {
            return Err(FieldError::new("filters", format!("must hold at most {MAX_CONDITIONS} conditions")));
        }
        let (path, kind, values) = c.map_err(|e| e.under(&under))?;
        parsed.push(Condition::parse(path, kind, values).map_err(|e| e.under(&under))?);
    }
    Ok(parsed)
}

/// Whether `data` meets every condition (an empty list passes everything).
pub fn matches_all(conditions: &[Condition], data: &Value) -> bool {
    conditions.iter().all(|c| c.matches(data))
}

/// What a schema says a field may hold.
#[derive(Debug, Default)]
struct FieldShape {
    /// JSON Schema type names (`string`, `integer`, `null`, `object`, ...).
    types: Vec<String>,
    /// The allowed values, when every branch lists them (`enum`, `const`).
    allowed: Option<Vec<Value>>,
    /// A branch allows anything (no `type`, `enum` or `const`).
    any: bool,
}

/// Check `conditions` against the JSON Schemas of the types the endpoint
/// subscribes to (`event_types`; empty means all twelve). With a list, the
/// path must be a field of every listed type; with all types, of at least
/// one (events of the others never have the field, so they never match).
/// Values are checked against the field's type in every type that has it.
pub fn check_against_schemas(conditions: &[Condition], event_types: &[EventType]) -> Result<(), FieldError> {
    if conditions.is_empty() {
        return Ok(());
    }
    let every = event_types.is_empty();
    let types: Vec<EventType> = if every { EventType::ALL.to_vec() } else { event_types.to_vec() };
    let schemas: Vec<(EventType, Value)> = types.iter().map(|t| (*t, Payload::json_schema(*t))).collect();
    for (i, c) in conditions.iter().enumerate() {
        let under = format!("filters[{i}]");
        let mut found = 0;
        for (t, schema) in &schemas {
            let Some(shape) = field_shape(schema, &c.path) else {
                if every {
                    continue;
                }
                return Err(FieldError::new(
                    "path",
                    format!("`{}` is not a field of `{t}` events' data (see ListEventTypes for the schema)", c.path),
                )
                .under(&under));
            };
            found += 1;
            check_values(c, &shape, *t).map_err(|e| e.under(&under))?;
        }
        if found == 0 {
            return Err(FieldError::new(
                "path",
                format!("`{}` is not a field of any event type's data (see ListEventTypes for the schemas)", c.path),
            )
            .under(&under));
        }
    }
    Ok(())
}

fn check_values(c: &Condition, shape: &FieldShape, t: EventType) -> Result<(), FieldError> {
    if matches!(c.op, Operator::Exists) || shape.any {
        return Ok(());
    }
    let scalar_types: Vec<&str> = shape
        .types
        .iter()
        .map(String::as_str)
        .filter(|t| matches!(*t, "string" | "integer" | "number" | "boolean"))
        .collect();
    if scalar_types.is_empty() {
        let kind = if shape.types.iter().any(|t| t == "array") { "a list" } else { "an object" };
        return Err(FieldError::new(
            "operator",
            format!("`{}` is {kind} in `{t}` events; only `exists` applies to it", c.path),
        ));
    }
    for (j, v) in c.op.values().iter().enumerate() {
        let field = format!("values[{j}]");
        let vt = v.json_type();
        let fits = scalar_types.iter().any(|st| *st == vt || (*st == "number" && vt == "integer"));
        if !fits {
            return Err(FieldError::new(
                field,
                format!("must be {} (the type of `{}` in `{t}` events), not {vt}", scalar_types.join(" or "), c.path),
            ));
        }
        if let Some(allowed) = &shape.allowed
            && !allowed.contains(&v.as_value())
        {
            let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(FieldError::new(field, format!("must be one of {} for `{}`", names.join(", "), c.path)));
        }
    }
    Ok(())
}

/// The shape of the field at `path` under the schema's `data`, or `None`
/// when no branch of the schema has that field.
fn field_shape(schema: &Value, path: &str) -> Option<FieldShape> {
    let defs = schema.get("$defs");
    let mut nodes = vec![schema.get("properties")?.get("data")?];
    for segment in path.split('.') {
        let mut next = Vec::new();
        for node in nodes.iter().flat_map(|n| branches(n, defs)) {
            if let Some(p) = node.get("properties").and_then(|p| p.get(segment)) {
                next.push(p);
            }
        }
        if next.is_empty() {
            return None;
        }
        nodes = next;
    }
    let mut shape = FieldShape::default();
    let mut allowed = Vec::new();
    let mut every_branch_lists = true;
    for leaf in nodes.iter().flat_map(|n| branches(n, defs)) {
        let listed =
            leaf.get("enum").and_then(Value::as_array).cloned().or_else(|| leaf.get("const").map(|c| vec![c.clone()]));
        let types: Vec<String> = match leaf.get("type") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
            _ => listed.iter().flatten().map(|v| json_type_of(v).to_owned()).collect(),
        };
        if types.is_empty() {
            shape.any = true;
        }
        match listed {
            Some(values) => allowed.extend(values),
            // A `null` branch (an optional field) restricts nothing else.
            None if types.iter().all(|t| t == "null") => {}
            None => every_branch_lists = false,
        }
        shape.types.extend(types);
    }
    if every_branch_lists && !allowed.is_empty() {
        shape.allowed = Some(allowed);
    }
    Some(shape)
}

fn json_type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A schema node's alternatives with `$ref`s followed: itself, or each
/// branch of its `anyOf` / `oneOf` / `allOf`, recursively.
fn branches<'a>(node: &'a Value, defs: Option<&'a Value>) -> Vec<&'a Value> {
    let mut out = Vec::new();
    let mut stack = vec![node];
    // Bounded: the schemas are ours and acyclic, but a guard costs nothing.
    let mut budget = 64;
    while let Some(n) = stack.pop() {
        budget -= 1;
        if budget == 0 {
            break;
        }
        if let Some(target) = n.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
            if let Some(d) = defs.and_then(|d| d.get(target)) {
                stack.push(d);
            }
            continue;
        }
        let mut split = false;
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(list) = n.get(key).and_then(Value::as_array) {
                // Reversed, so branches come out in the schema's order.
                stack.extend(list.iter().rev());
                split = true;
            }
        }
        if !split {
            out.push(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(path: &str, kind: OperatorKind, values: &[&str]) -> Condition {
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        Condition::parse(path, kind, &values).unwrap()
    }

    fn booking() -> Value {
        crate::event_type::example(EventType::AppointmentBookingCreated)
    }

    #[test]
    fn the_evaluator_tests_equals_in_and_exists_and_ands_them() {
        let data = booking();
        let channel = cond("channel", OperatorKind::Equals, &[r#""widget""#]);
        let kind = cond("appointment.location.kind", OperatorKind::In, &[r#""online""#, r#""onsite""#]);
        let email = cond("customer.email", OperatorKind::Exists, &[]);
        assert!(channel.matches(&data) && kind.matches(&data) && email.matches(&data));
        assert!(matches_all(&[channel.clone(), kind.clone(), email.clone()], &data));
        assert!(matches_all(&[], &data), "no conditions pass everything");

        let manual = cond("channel", OperatorKind::Equals, &[r#""manual""#]);
        assert!(!manual.matches(&data));
        assert!(!matches_all(&[channel, manual], &data), "conditions AND together");
        assert!(!cond("appointment.location.kind", OperatorKind::In, &[r#""phone""#]).matches(&data));
        assert!(!cond("customer.company", OperatorKind::Exists, &[]).matches(&data), "absent");
        assert!(!cond("customer.email.domain", OperatorKind::Exists, &[]).matches(&data), "through a scalar");
        let mut nulled = data.clone();
        nulled["customer"]["email"] = Value::Null;
        assert!(!email.matches(&nulled), "null is not there");
        assert!(!cond("channel", OperatorKind::Equals, &[r#""Widget""#]).matches(&data), "case counts");

        let group = crate::event_type::example(EventType::EventBookingCreated);
        assert!(cond("event.capacity", OperatorKind::Equals, &["12"]).matches(&group));
        assert!(cond("event.capacity", OperatorKind::Equals, &["12.0"]).matches(&group), "numbers by value");
        assert!(!cond("event.capacity", OperatorKind::Equals, &[r#""12""#]).matches(&group), "a string is not 12");
    }

    #[test]
    fn conditions_are_parsed_with_limits_and_errors_name_the_field() {
        let err = |path: &str, kind, values: &[&str]| {
            let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
            Condition::parse(path, kind, &values).unwrap_err().to_string()
        };
        assert!(err("", OperatorKind::Exists, &[]).starts_with("path: is required"));
        assert!(err("customer..email", OperatorKind::Exists, &[]).starts_with("path: segment ``"));
        assert!(err("a.b.c.d.e.f.g.h.i", OperatorKind::Exists, &[]).contains("at most 8 segments"));
        assert!(err("channel", OperatorKind::Equals, &[]).starts_with("values: must hold exactly one"));
        assert!(err("channel", OperatorKind::Exists, &["1"]).starts_with("values: must be empty"));
        assert!(err("channel", OperatorKind::Equals, &["widget"]).starts_with("values[0]: must be a JSON scalar"));
        assert!(err("channel", OperatorKind::In, &["1", "null"]).starts_with("values[1]: must not be null"));
        let many: Vec<String> = (0..=MAX_VALUES).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(err("channel", OperatorKind::In, &many).contains("at most 20 values"));

        let values = vec![];
        let eleven = (0..=MAX_CONDITIONS).map(|_| Ok(("channel", OperatorKind::Exists, values.as_slice())));
        assert_eq!(parse_conditions(eleven).unwrap_err().to_string(), "filters: must hold at most 10 conditions");
        let bad = [Ok(("channel", OperatorKind::Exists, values.as_slice())), Ok(("", OperatorKind::Exists, &[][..]))];
        assert!(parse_conditions(bad).unwrap_err().to_string().starts_with("filters[1].path: is required"));
    }

    #[test]
    fn a_save_is_checked_against_the_types_schemas() {
        use EventType as T;
        let check = |c: Condition, types: &[T]| check_against_schemas(&[c], types).map_err(|e| e.to_string());
        let ok = |c, types: &[T]| assert_eq!(check(c, types), Ok(()));
        ok(cond("channel", OperatorKind::Equals, &[r#""widget""#]), &[T::AppointmentBookingCreated]);
        ok(cond("appointment.location.kind", OperatorKind::In, &[r#""onsite""#]), &[T::AppointmentUpdated]);
        ok(cond("customer.email", OperatorKind::Exists, &[]), &[]);
        ok(cond("event.capacity", OperatorKind::Equals, &["12"]), &[T::EventBookingCreated]);
        ok(cond("changed_fields", OperatorKind::Exists, &[]), &[T::AppointmentUpdated]);
        // With every type, a field of some types is enough.
        ok(cond("appointment.id", OperatorKind::Equals, &[r#""apt_1""#]), &[]);

        let refused = |c, types: &[T]| check(c, types).unwrap_err();
        let e =
            refused(cond("appointment.id", OperatorKind::Exists, &[]), &[T::AppointmentUpdated, T::CustomerCreated]);
        assert!(e.starts_with("filters[0].path: `appointment.id` is not a field of `customer.created`"), "{e}");
        let e = refused(cond("booking.status", OperatorKind::Exists, &[]), &[]);
        assert!(e.starts_with("filters[0].path: `booking.status` is not a field of any event type"), "{e}");
        let e = refused(cond("channel", OperatorKind::Equals, &["3"]), &[T::AppointmentBookingCreated]);
        assert!(e.starts_with("filters[0].values[0]: must be string"), "{e}");
        let e = refused(cond("channel", OperatorKind::In, &[r#""widget""#, r#""fax""#]), &[T::EventBookingCreated]);
        assert!(e.starts_with(r#"filters[0].values[1]: must be one of "widget", "manual""#), "{e}");
        let e = refused(cond("event.capacity", OperatorKind::Equals, &["true"]), &[T::EventBookingCreated]);
        assert!(e.contains("must be integer"), "{e}");
        let e = refused(cond("customer", OperatorKind::Equals, &[r#""x""#]), &[T::CustomerCreated]);
        assert!(e.starts_with("filters[0].operator: `customer` is an object"), "{e}");
        let e = refused(cond("changed_fields", OperatorKind::Equals, &[r#""notes""#]), &[T::AppointmentUpdated]);
        assert!(e.contains("is a list"), "{e}");
    }

    #[test]
    fn conditions_read_back_as_stored() {
        let c = cond("appointment.location.kind", OperatorKind::In, &[r#""onsite""#, "2", "true"]);
        let stored = serde_json::to_value(&c).unwrap();
        assert_eq!(stored, json!({"path": "appointment.location.kind", "op": "in", "values": ["onsite", 2, true]}));
        assert_eq!(serde_json::from_value::<Condition>(stored).unwrap(), c);
        let e = cond("customer.email", OperatorKind::Exists, &[]);
        assert_eq!(serde_json::to_value(&e).unwrap(), json!({"path": "customer.email", "op": "exists"}));
    }
}
