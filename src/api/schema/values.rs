//! Value validation of custom resources against their CRD's `openAPIV3Schema`: types,
//! `enum`, `required`, bounds, lengths, `pattern`, item and property counts, `uniqueItems`,
//! `multipleOf` and the `allOf`/`anyOf`/`oneOf`/`not` combinators, reported as the field
//! errors kube-apiserver gives (its kube-openapi validator's messages as converted by
//! apiextensions: `Required value`, `Unsupported value: ...: supported values: ...`,
//! `Invalid value: "string": spec.replicas in body must be of type integer: "string"`).
//!
//! The schema is compiled once per registered CRD version (patterns included) and kept in
//! the registry entry; a write walks only the object's own fields. CEL rules
//! (`x-kubernetes-validations`) and `format` checks are not evaluated.

use crate::api::validation::FieldError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A compiled schema node.
#[derive(Debug, Default)]
pub struct ValueSchema {
    types: Vec<String>,
    nullable: bool,
    enumeration: Vec<Value>,
    required: Vec<String>,
    properties: BTreeMap<String, ValueSchema>,
    additional: Option<Box<ValueSchema>>,
    items: Option<Box<ValueSchema>>,
    maximum: Option<f64>,
    exclusive_maximum: bool,
    minimum: Option<f64>,
    exclusive_minimum: bool,
    multiple_of: Option<f64>,
    max_length: Option<u64>,
    min_length: Option<u64>,
    pattern: Option<(String, regex::Regex)>,
    max_items: Option<u64>,
    min_items: Option<u64>,
    unique_items: bool,
    max_properties: Option<u64>,
    min_properties: Option<u64>,
    all_of: Vec<ValueSchema>,
    any_of: Vec<ValueSchema>,
    one_of: Vec<ValueSchema>,
    not: Option<Box<ValueSchema>>,
}

const MAX_DEPTH: usize = 64;

impl ValueSchema {
    pub fn compile(schema: &Value) -> ValueSchema {
        compile(schema, 0)
    }

    /// The field errors of a whole custom resource (root path empty, as upstream).
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        self.check(obj, "", &mut errs);
        errs
    }

    fn check(&self, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        if v.is_null() {
            if !self.types.is_empty() && !self.nullable {
                errs.push(type_error(path, &self.types, "null"));
            }
            return;
        }
        if !self.type_matches(v) {
            errs.push(type_error(path, &self.types, json_type(v)));
            return;
        }
        if !self.enumeration.is_empty() && !self.enumeration.iter().any(|e| same(e, v)) {
            let allowed: Vec<String> = self
                .enumeration
                .iter()
                .map(|e| match e {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
            errs.push(FieldError::not_supported(&shown(path), v, &allowed));
        }
        match v {
            Value::Number(n) => self.check_number(n.as_f64().unwrap_or_default(), v, path, errs),
            Value::String(s) => self.check_string(s, v, path, errs),
            Value::Array(items) => self.check_array(items, path, errs),
            Value::Object(fields) => self.check_object(fields, path, errs),
            _ => {}
        }
        for s in &self.all_of {
            s.check(v, path, errs);
        }
        if !self.any_of.is_empty()
            && !self
                .any_of
                .iter()
                .any(|s| s.validate_at(v, path).is_empty())
        {
            errs.push(FieldError::invalid(
                &shown(path),
                v,
                &format!("{} must validate at least one schema (anyOf)", named(path)),
            ));
        }
        if !self.one_of.is_empty() {
            let passing = self
                .one_of
                .iter()
                .filter(|s| s.validate_at(v, path).is_empty())
                .count();
            if passing != 1 {
                errs.push(FieldError::invalid(
                    &shown(path),
                    v,
                    &format!(
                        "{} must validate one and only one schema (oneOf)",
                        named(path)
                    ),
                ));
            }
        }
        if let Some(not) = &self.not {
            if not.validate_at(v, path).is_empty() {
                errs.push(FieldError::invalid(
                    &shown(path),
                    v,
                    &format!("{} must not validate the schema (not)", named(path)),
                ));
            }
        }
    }

    fn validate_at(&self, v: &Value, path: &str) -> Vec<FieldError> {
        let mut errs = Vec::new();
        self.check(v, path, &mut errs);
        errs
    }

    fn type_matches(&self, v: &Value) -> bool {
        if self.types.is_empty() {
            return true;
        }
        let actual = json_type(v);
        self.types.iter().any(|t| {
            t == actual
                || (t == "integer" && is_integer(v))
                || (t == "number" && actual == "integer")
        })
    }

    fn check_number(&self, n: f64, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        let p = named(path);
        if let Some(max) = self.maximum {
            if self.exclusive_maximum && n >= max {
                errs.push(FieldError::invalid(
                    &shown(path),
                    v,
                    &format!("{p} in body should be less than {}", go_number(max)),
                ));
            } else if n > max {
                errs.push(FieldError::invalid(
                    &shown(path),
                    v,
                    &format!(
                        "{p} in body should be less than or equal to {}",
                        go_number(max)
                    ),
                ));
            }
        }
        if let Some(min) = self.minimum {
            if self.exclusive_minimum && n <= min {
                errs.push(FieldError::invalid(
                    &shown(path),
                    v,
                    &format!("{p} in body should be greater than {}", go_number(min)),
                ));
            } else if n < min {
                errs.push(FieldError::invalid(
                    &shown(path),
                    v,
                    &format!(
                        "{p} in body should be greater than or equal to {}",
                        go_number(min)
                    ),
                ));
            }
        }
        if let Some(m) = self.multiple_of.filter(|m| *m > 0.0) {
            let q = n / m;
            if (q - q.round()).abs() > 1e-9 {
                errs.push(FieldError::invalid(
                    &shown(path),
                    v,
                    &format!("{p} in body should be a multiple of {}", go_number(m)),
                ));
            }
        }
    }

    fn check_string(&self, s: &str, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        // Lengths count characters, as upstream's validator does (utf8.RuneCountInString).
        let chars = s.chars().count() as u64;
        if let Some(max) = self.max_length.filter(|m| chars > *m) {
            errs.push(FieldError::too_long(&shown(path), max as usize));
        }
        if let Some(min) = self.min_length.filter(|m| chars < *m) {
            errs.push(FieldError::invalid(
                &shown(path),
                v,
                &format!(
                    "{} in body should be at least {min} chars long",
                    named(path)
                ),
            ));
        }
        if let Some((text, re)) = &self.pattern {
            if !re.is_match(s) {
                errs.push(FieldError::invalid(
                    &shown(path),
                    v,
                    &format!("{} in body should match '{text}'", named(path)),
                ));
            }
        }
    }

    fn check_array(&self, items: &[Value], path: &str, errs: &mut Vec<FieldError>) {
        let n = items.len() as u64;
        if let Some(max) = self.max_items.filter(|m| n > *m) {
            errs.push(FieldError::too_many(&shown(path), n as i64, max as i64));
        }
        if let Some(min) = self.min_items.filter(|m| n < *m) {
            errs.push(FieldError::invalid(
                &shown(path),
                n as i64,
                &format!("{} in body should have at least {min} items", named(path)),
            ));
        }
        if self.unique_items
            && items
                .iter()
                .enumerate()
                .any(|(i, a)| items[..i].iter().any(|b| same(a, b)))
        {
            errs.push(FieldError::invalid(
                &shown(path),
                "",
                &format!("{} in body shouldn't contain duplicates", named(path)),
            ));
        }
        if let Some(schema) = &self.items {
            for (i, item) in items.iter().enumerate() {
                schema.check(item, &format!("{path}[{i}]"), errs);
            }
        }
    }

    fn check_object(&self, fields: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
        let n = fields.len() as u64;
        if let Some(max) = self.max_properties.filter(|m| n > *m) {
            errs.push(FieldError::too_many(&shown(path), n as i64, max as i64));
        }
        if let Some(min) = self.min_properties.filter(|m| n < *m) {
            errs.push(FieldError::invalid(
                &shown(path),
                n as i64,
                &format!(
                    "{} in body should have at least {min} properties",
                    named(path)
                ),
            ));
        }
        for (key, value) in fields {
            let child = child_path(path, key);
            match self.properties.get(key) {
                // The object meta of the root is validated as every object's metadata.
                Some(_) if path.is_empty() && key == "metadata" => {}
                Some(schema) => schema.check(value, &child, errs),
                None => {
                    if let Some(schema) = &self.additional {
                        schema.check(value, &child, errs);
                    }
                }
            }
        }
        for key in &self.required {
            if !fields.contains_key(key) {
                errs.push(FieldError::required(&child_path(path, key), ""));
            }
        }
    }
}

fn compile(schema: &Value, depth: usize) -> ValueSchema {
    if depth >= MAX_DEPTH || !schema.is_object() {
        return ValueSchema::default();
    }
    let u = |name: &str| schema[name].as_u64();
    let f = |name: &str| schema[name].as_f64();
    let list = |name: &str| -> Vec<ValueSchema> {
        schema[name]
            .as_array()
            .map(|a| a.iter().map(|s| compile(s, depth + 1)).collect())
            .unwrap_or_default()
    };
    let types = match &schema["type"] {
        // apiextensions turns int-or-string into these two types before validating.
        _ if schema["x-kubernetes-int-or-string"].as_bool() == Some(true) => {
            vec!["integer".to_owned(), "string".to_owned()]
        }
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    ValueSchema {
        types,
        nullable: schema["nullable"].as_bool() == Some(true),
        enumeration: schema["enum"].as_array().cloned().unwrap_or_default(),
        required: schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        properties: schema["properties"]
            .as_object()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), compile(v, depth + 1)))
                    .collect()
            })
            .unwrap_or_default(),
        additional: schema["additionalProperties"]
            .is_object()
            .then(|| Box::new(compile(&schema["additionalProperties"], depth + 1))),
        items: schema["items"]
            .is_object()
            .then(|| Box::new(compile(&schema["items"], depth + 1))),
        maximum: f("maximum"),
        exclusive_maximum: schema["exclusiveMaximum"].as_bool() == Some(true),
        minimum: f("minimum"),
        exclusive_minimum: schema["exclusiveMinimum"].as_bool() == Some(true),
        multiple_of: f("multipleOf"),
        max_length: u("maxLength"),
        min_length: u("minLength"),
        // A pattern Rust's engine cannot compile (look-around) is not enforced rather than
        // refusing every object.
        pattern: schema["pattern"]
            .as_str()
            .and_then(|p| regex::Regex::new(p).ok().map(|re| (p.to_owned(), re))),
        max_items: u("maxItems"),
        min_items: u("minItems"),
        unique_items: schema["uniqueItems"].as_bool() == Some(true),
        max_properties: u("maxProperties"),
        min_properties: u("minProperties"),
        all_of: list("allOf"),
        any_of: list("anyOf"),
        one_of: list("oneOf"),
        not: schema["not"]
            .is_object()
            .then(|| Box::new(compile(&schema["not"], depth + 1))),
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The path as field errors print it (`<root>`-level errors have an empty field).
fn shown(path: &str) -> String {
    path.to_owned()
}

/// The path as kube-openapi names it inside its messages (the root is `.`).
fn named(path: &str) -> &str {
    if path.is_empty() {
        "."
    } else {
        path
    }
}

fn type_error(path: &str, types: &[String], actual: &str) -> FieldError {
    FieldError::type_invalid(
        &shown(path),
        actual,
        &format!(
            "{} in body must be of type {}: {:?}",
            named(path),
            types.join(","),
            actual
        ),
    )
}

fn json_type(v: &Value) -> &'static str {
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

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// JSON equality with numbers compared by value (1 and 1.0 are the same enum member).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Go's `%v` of a float64: integers without a fraction.
fn go_number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The schema of upstream's CRD-publishing conformance test, plus bounds.
    fn foo() -> ValueSchema {
        ValueSchema::compile(&json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object"},
                "spec": {"type": "object", "properties": {
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 5},
                    "name": {"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"},
                    "tags": {"type": "array", "maxItems": 2, "uniqueItems": true,
                             "items": {"type": "string"}},
                    "port": {"x-kubernetes-int-or-string": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "bars": {"type": "array", "items": {
                        "type": "object", "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "feeling": {"type": "string", "enum": ["Great", "Down"]}
                        }}}
                }}
            }
        }))
    }

    fn messages(v: Value) -> Vec<String> {
        foo().validate(&v).iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_conforming_object_has_no_errors() {
        let ok = json!({"metadata": {"name": "x"}, "spec": {
            "replicas": 3, "name": "abc", "tags": ["a", "b"], "port": "http",
            "labels": {"a": "b"}, "bars": [{"name": "b", "feeling": "Great"}]}});
        assert!(messages(ok).is_empty());
        assert!(messages(json!({"spec": {"port": 80, "replicas": 2.0}})).is_empty());
    }

    #[test]
    fn enum_and_required_read_as_upstream() {
        assert_eq!(
            messages(json!({"spec": {"bars": [{"name": "b", "feeling": "NonExistentValue"}]}})),
            [
                r#"spec.bars[0].feeling: Unsupported value: "NonExistentValue": supported values: "Great", "Down""#
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"bars": [{"age": "10"}]}})),
            ["spec.bars[0].name: Required value"]
        );
    }

    #[test]
    fn types_bounds_lengths_and_counts_read_as_upstream() {
        assert_eq!(
            messages(json!({"spec": {"replicas": "three"}})),
            [
                r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"replicas": 9}})),
            ["spec.replicas: Invalid value: 9: spec.replicas in body should be less than or equal to 5"]
        );
        assert_eq!(
            messages(json!({"spec": {"name": "ABCD"}})),
            [
                "spec.name: Too long: may not be more than 3 bytes",
                "spec.name: Invalid value: \"ABCD\": spec.name in body should match '^[a-z]+$'"
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"tags": ["a", "a", "b"]}})),
            [
                "spec.tags: Too many: 3: must have at most 2 items",
                "spec.tags: Invalid value: \"\": spec.tags in body shouldn't contain duplicates"
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"labels": {"a": 1}, "port": true}})),
            [
                r#"spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer""#,
                r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#
            ]
        );
        assert_eq!(
            messages(json!({"spec": null})),
            [r#"spec: Invalid value: "null": spec in body must be of type object: "null""#]
        );
    }
}
