//! CRD `additionalPrinterColumns`: column definitions and cell rendering.
//!
//! Invariant: cells follow the CRD table convertor exactly — the first
//! JSONPath result only; `string` columns print text (maps and lists as
//! compact JSON); `integer`/`number`/`boolean` pass through only when the
//! JSON type fits; `date` becomes an age; anything else is null.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::{parse_time, since_time};
use super::fields;
use super::jsonpath::{JsonPath, JsonPathError};
use super::AGE_DESC;

/// A CRD `additionalPrinterColumns` entry with its parsed JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomColumn {
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub column_type: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
    path: JsonPath,
}

impl CustomColumn {
    /// Builds a column, rejecting a JSONPath outside the supported subset.
    pub fn new(
        name: impl Into<String>,
        column_type: impl Into<String>,
        format: impl Into<String>,
        description: impl Into<String>,
        priority: i64,
        json_path: impl Into<String>,
    ) -> Result<CustomColumn, JsonPathError> {
        let json_path = json_path.into();
        let path = JsonPath::parse(&json_path)?;
        Ok(CustomColumn {
            name: name.into(),
            column_type: column_type.into(),
            format: format.into(),
            description: description.into(),
            priority,
            json_path,
            path,
        })
    }

    /// The path this column reads.
    pub fn path(&self) -> &JsonPath {
        &self.path
    }
}

/// The columns of one CRD version from its `additionalPrinterColumns`
/// (absent, null or `[]` give the upstream default single Age column).
/// Like the CRD convertor, columns stop at the first unusable JSONPath.
pub(super) fn crd_columns(additional_printer_columns: &Value) -> Vec<CustomColumn> {
    let entries = additional_printer_columns
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut columns = Vec::new();
    if entries.is_empty() {
        let age = CustomColumn::new(
            "Age",
            "date",
            "",
            AGE_DESC,
            0,
            ".metadata.creationTimestamp",
        )
        .expect("the built-in Age path parses");
        return vec![age];
    }
    for entry in entries {
        let json_path = fields::str_at(entry, &["jsonPath"]);
        let mut description = fields::str_at(entry, &["description"]).to_string();
        if description.is_empty() {
            description =
                format!("Custom resource definition column (in JSONPath format): {json_path}");
        }
        match CustomColumn::new(
            fields::str_at(entry, &["name"]),
            fields::str_at(entry, &["type"]),
            fields::str_at(entry, &["format"]),
            description,
            fields::int_at(entry, &["priority"]),
            json_path,
        ) {
            Ok(c) => columns.push(c),
            Err(_) => break,
        }
    }
    columns
}

/// The cell for a CRD column of `column_type` given the first JSONPath
/// result, following the CRD table convertor: strings are printed as text
/// (maps and lists as compact JSON), integers/numbers/booleans pass through
/// when the JSON type fits, dates become ages, anything else is null.
pub(super) fn cell(column_type: &str, value: Option<&Value>, now: DateTime<Utc>) -> Value {
    let Some(value) = value else {
        return Value::Null;
    };
    match column_type {
        "string" => Value::String(print_text(value)),
        "integer" => match value {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map_or(Value::Null, Value::from),
            _ => Value::Null,
        },
        "number" => match value {
            Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
            _ => Value::Null,
        },
        "boolean" => match value {
            Value::Bool(b) => Value::Bool(*b),
            _ => Value::Null,
        },
        "date" => match value {
            // Empty means an unset time, like upstream's zero Time.
            Value::String(s) if s.is_empty() || s == "null" => Value::String("<unknown>".into()),
            Value::String(s) => match parse_time(s) {
                Some(t) => Value::String(since_time(Some(t), now)),
                None if s.starts_with("0001-01-01") => Value::String("<unknown>".into()),
                None => Value::String("<invalid>".into()),
            },
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// Text of a value as the jsonpath printer writes it.
fn print_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => match n.as_u64() {
                Some(u) => u.to_string(),
                None => go_float(n.as_f64().unwrap_or(0.0)),
            },
        },
        // A JSON null reaches the Go template printer as an invalid value.
        Value::Null => "<no value>".to_string(),
        Value::Array(_) | Value::Object(_) => compact_json(v),
    }
}

/// A float as Go's `%v` prints it: shortest digits, exponent form when the
/// decimal exponent is below -4 or at least 6.
fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if f != 0.0 && !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// Compact JSON with sorted keys and HTML-safe escapes, as Go's
/// `json.Marshal` writes it.
fn compact_json(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    if let Some(val) = map.get(k) {
                        write(val, out);
                    }
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 1e21 {
                    out.push_str(&format!("{f}"));
                } else {
                    out.push_str(&n.to_string());
                }
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ago, now};
    use super::super::Printer;
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_follow_the_column_type() {
        let now = parse_time("2024-05-01T10:05:00Z").expect("valid time");
        assert_eq!(cell("integer", Some(&json!(3)), now), json!(3));
        assert_eq!(cell("integer", Some(&json!(2.7)), now), json!(2));
        assert_eq!(cell("integer", Some(&json!("3")), now), Value::Null);
        assert_eq!(cell("number", Some(&json!(3)), now), json!(3.0));
        assert_eq!(cell("boolean", Some(&json!(false)), now), json!(false));
        assert_eq!(cell("string", Some(&json!(3)), now), json!("3"));
        assert_eq!(cell("string", Some(&json!(true)), now), json!("true"));
        assert_eq!(
            cell("string", Some(&json!({"b": 1, "a": "<"})), now),
            json!(r#"{"a":"\u003c","b":1}"#)
        );
        assert_eq!(
            cell("string", Some(&json!(["x", "y"])), now),
            json!(r#"["x","y"]"#)
        );
        assert_eq!(
            cell("date", Some(&json!("2024-05-01T10:00:00Z")), now),
            json!("5m")
        );
        assert_eq!(
            cell("date", Some(&json!("yesterday")), now),
            json!("<invalid>")
        );
        assert_eq!(cell("string", None, now), Value::Null);
    }

    #[test]
    fn floats_print_like_go() {
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(3.0), "3");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(1.5e-5), "1.5e-05");
    }

    #[test]
    fn crd_without_columns_gets_name_and_age() {
        let p = Printer::for_crd(&Value::Null);
        let defs = p.column_definitions();
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[1]["name"], "Age");
        assert_eq!(defs[1]["type"], "date");
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": ago(3 * 86400 + 7200)}});
        assert_eq!(p.row(&obj, now())["cells"], json!(["w", "3d2h"]));
    }

    #[test]
    fn crd_columns_render_by_type() {
        let cols = json!([
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "description": "Wanted"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
            {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "priority": 1},
            {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {"name": "First", "type": "string", "jsonPath": ".items[0].x"}
        ]);
        let p = Printer::for_crd(&cols);
        let defs = p.column_definitions();
        assert_eq!(defs.len(), 7);
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(
            defs[1],
            json!({"name": "Replicas", "type": "integer", "format": "",
                                   "description": "Wanted", "priority": 0})
        );
        assert_eq!(
            defs[2]["description"],
            "Custom resource definition column (in JSONPath format): .status.conditions[?(@.type==\"Ready\")].status"
        );
        assert_eq!(defs[3]["priority"], 1);
        let obj = json!({
            "metadata": {"name": "w1", "creationTimestamp": ago(90)},
            "spec": {"replicas": 2, "ratio": 0.25, "paused": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            "items": [{"x": "first"}]
        });
        assert_eq!(
            p.row(&obj, now())["cells"],
            json!(["w1", 2, "True", 0.25, true, "90s", "first"])
        );
        let bare = json!({"metadata": {"name": "w2"}});
        assert_eq!(
            p.row(&bare, now())["cells"],
            json!(["w2", null, null, null, null, null, null])
        );
    }

    #[test]
    fn crd_columns_stop_at_the_first_bad_path() {
        let cols = json!([
            {"name": "A", "type": "string", "jsonPath": ".spec.a"},
            {"name": "B", "type": "string", "jsonPath": ".spec[b"},
            {"name": "C", "type": "string", "jsonPath": ".spec.c"}
        ]);
        let Printer::Custom(columns) = Printer::for_crd(&cols) else {
            panic!("CRD printers are custom");
        };
        assert_eq!(columns.len(), 1);
        assert_eq!(columns[0].name, "A");
    }
}
