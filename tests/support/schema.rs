//! A small JSON Schema checker for the keywords doc/report.schema.json uses (type, const,
//! enum, required, properties, additionalProperties: false, items, minimum, oneOf, $ref to
//! #/$defs): enough to hold mailferry's --json output to its documented shape.

use serde_json::Value;

/// The schema of `--json` objects.
pub fn report_schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/doc/report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read the schema")).expect("JSON")
}

/// Why `value` does not match `schema` (within `root`), or None.
pub fn violation(root: &Value, schema: &Value, value: &Value, at: &str) -> Option<String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/$defs/")
            .expect("only #/$defs/ references");
        return violation(root, &root["$defs"][name], value, at);
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => panic!("bad type keyword at {at}"),
        };
        if !types.iter().any(|t| is_type(value, t)) {
            return Some(format!("{at}: {value} is not {types:?}"));
        }
    }
    if let Some(c) = schema.get("const").filter(|c| *c != value) {
        return Some(format!("{at}: {value} is not {c}"));
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return Some(format!("{at}: {value} is not one of {options:?}"));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        return Some(format!("{at}: {n} is below {min}"));
    }
    if let Some(object) = value.as_object() {
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = key.as_str().expect("a required key");
            if !object.contains_key(key) {
                return Some(format!("{at}: no {key}"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, item) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(s) => {
                    if let Some(v) = violation(root, s, item, &format!("{at}.{key}")) {
                        return Some(v);
                    }
                }
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Some(format!("{at}: {key} is not in the schema"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            if let Some(v) = violation(root, items, item, &format!("{at}[{i}]")) {
                return Some(v);
            }
        }
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let why: Vec<Option<String>> = options
            .iter()
            .map(|o| violation(root, o, value, at))
            .collect();
        match why.iter().filter(|w| w.is_none()).count() {
            1 => {}
            0 => return Some(format!("{at}: matches none of oneOf: {why:?}")),
            n => return Some(format!("{at}: matches {n} of oneOf")),
        }
    }
    None
}

fn is_type(value: &Value, t: &str) -> bool {
    match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => panic!("unknown type {t}"),
    }
}

/// Every line of standard output as JSON, each checked against the report schema.
pub fn objects(stdout: &str) -> Vec<Value> {
    let schema = report_schema();
    stdout
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if let Some(why) = violation(&schema, &schema, &value, "$") {
                panic!("{why}\n{line}");
            }
            value
        })
        .collect()
}
