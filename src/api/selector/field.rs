//! Field selectors: `field=value`, `field==value`, `field!=value`, comma-separated AND,
//! with `\,` `\=` `\\` escapes in values.
//!
//! Invariant: terms are kept in upstream's order (sorted by their raw text) and values are
//! stored unescaped; `Display` re-escapes them.

use std::fmt;

use serde_json::Value;

use super::field_labels::{check_field_label, field_value};
use super::SelectorError;

/// Equality or inequality; `=` and `==` are the same operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    NotEquals,
}

/// One `field op value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}

/// A parsed field selector; empty matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

/// Splits on commas that are neither escaped nor inside parentheses; escapes stay in place.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

/// The field is everything before the first operator; no escaping is possible there.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        if let Some(v) = rest.strip_prefix("!=") {
            return Some((&term[..i], FieldOp::NotEquals, v));
        }
        if let Some(v) = rest.strip_prefix("==") {
            return Some((&term[..i], FieldOp::Equals, v));
        }
        if let Some(v) = rest.strip_prefix('=') {
            return Some((&term[..i], FieldOp::Equals, v));
        }
    }
    None
}

fn unescape(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => {
                    return Err(SelectorError::Field(format!(
                        "invalid field selector: invalid escape sequence: \\{c}"
                    )))
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Upstream prints the rune with %v, i.e. as its code point number.
            ',' | '=' => {
                return Err(SelectorError::Field(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )))
            }
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::Field(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(out)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl FieldSelector {
    /// Matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the `fieldSelector` query syntax. Field names are not checked here; see
    /// [`FieldSelector::transform_for`].
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort_unstable();
        let mut terms = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, op, raw)) = split_term(part) else {
                return Err(SelectorError::Field(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            terms.push(FieldTerm {
                field: field.to_string(),
                op,
                value: unescape(raw)?,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// Checks every field against what `group`/`resource` supports and applies upstream's
    /// renames (pods: `spec.host` → `spec.nodeName`). The API server calls this on every
    /// list/watch so unsupported fields fail with 400 even when nothing would match.
    pub fn transform_for(&self, group: &str, resource: &str) -> Result<Self, SelectorError> {
        let terms = self
            .terms
            .iter()
            .map(|t| {
                Ok(FieldTerm {
                    field: check_field_label(group, resource, &t.field)?,
                    op: t.op,
                    value: t.value.clone(),
                })
            })
            .collect::<Result<_, SelectorError>>()?;
        Ok(FieldSelector { terms })
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether `obj` is selected; `get` returns a field's value, `None` when unset (which
    /// compares as the empty string, as upstream's field sets do).
    pub fn matches<F>(&self, obj: &Value, get: F) -> bool
    where
        F: Fn(&Value, &str) -> Option<String>,
    {
        self.terms.iter().all(|t| {
            let have = get(obj, &t.field).unwrap_or_default();
            match t.op {
                FieldOp::Equals => have == t.value,
                FieldOp::NotEquals => have != t.value,
            }
        })
    }

    /// [`FieldSelector::matches`] with the resource's upstream field labels.
    pub fn matches_object(
        &self,
        group: &str,
        resource: &str,
        obj: &Value,
    ) -> Result<bool, SelectorError> {
        for t in &self.terms {
            let have = field_value(group, resource, obj, &t.field)?.unwrap_or_default();
            let ok = match t.op {
                FieldOp::Equals => have == t.value,
                FieldOp::NotEquals => have != t.value,
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `(field, value)` when the whole selector is one `field=value` term.
    pub fn single_exact_match(&self) -> Option<(&str, &str)> {
        match &self.terms[..] {
            [t] if t.op == FieldOp::Equals => Some((&t.field, &t.value)),
            _ => None,
        }
    }

    /// The value `field` must equal, if a `field=value` term exists (e.g. `spec.nodeName`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.op == FieldOp::Equals)
            .map(|t| t.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match t.op {
                FieldOp::Equals => "=",
                FieldOp::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", t.field, escape(&t.value))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn getter(obj: &Value, field: &str) -> Option<String> {
        let mut cur = obj;
        for part in field.split('.') {
            cur = cur.get(part)?;
        }
        cur.as_str().map(str::to_string)
    }

    #[test]
    fn parse_and_match_table() {
        let pod = json!({"metadata": {"name": "web-1", "namespace": "prod"},
                         "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name!=web-1", false),
            ("status.phase!=Succeeded,status.phase!=Failed", true),
            ("spec.nodeName=n1,metadata.namespace=prod", true),
            ("spec.nodeName=n2", false),
            ("spec.schedulerName=", true),
            ("spec.schedulerName!=", false),
            (",metadata.name=web-1,", true),
        ];
        for (sel, want) in cases {
            let s = FieldSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&pod, getter), *want, "selector {sel:?}");
        }
    }

    #[test]
    fn escaped_comma_and_equals_are_data() {
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c\\d,x=y").expect("valid");
        assert_eq!(s.terms().len(), 2);
        assert_eq!(s.requires_exact_match("metadata.name"), Some(r"a,b=c\d"));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d,x=y");
    }

    #[test]
    fn canonical_string_sorts_terms_and_normalizes_double_equals() {
        let s = FieldSelector::parse("status.phase==Running,metadata.name!=x").expect("valid");
        assert_eq!(s.to_string(), "metadata.name!=x,status.phase=Running");
    }

    #[test]
    fn parse_errors_use_upstream_messages() {
        let cases = [
            ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            (
                r"a=b\x",
                r"invalid field selector: invalid escape sequence: \x",
            ),
            (
                r"a=b\",
                r"invalid field selector: invalid escape sequence: \",
            ),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: 61",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                FieldSelector::parse(input).expect_err(input).to_string(),
                want
            );
        }
    }

    #[test]
    fn transform_rejects_unsupported_and_renames_spec_host() {
        let s = FieldSelector::parse("spec.host=n1").expect("valid");
        let t = s.transform_for("", "pods").expect("supported");
        assert_eq!(t.to_string(), "spec.nodeName=n1");
        let bad = FieldSelector::parse("foo=bar").expect("valid");
        assert_eq!(
            bad.transform_for("", "pods")
                .expect_err("unsupported")
                .to_string(),
            "field label not supported: foo"
        );
    }

    #[test]
    fn matches_object_uses_resource_field_labels() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {}});
        let s = FieldSelector::parse("spec.nodeName=,spec.hostNetwork=false").expect("valid");
        assert_eq!(s.matches_object("", "pods", &pod), Ok(true));
        let s = FieldSelector::parse("status.phase=Running").expect("valid");
        assert_eq!(s.matches_object("", "pods", &pod), Ok(false));
    }
}
