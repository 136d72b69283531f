//! The JSONPath subset used by CRD `additionalPrinterColumns`.
//!
//! Only selection lives here; turning the first result into a cell is
//! `custom.rs`'s job.
//!
//! Supported: optional `{...}` and `$`, `.field`, `['field']`, `.*`, `[*]`,
//! `[n]` (negative from the end), `[start:end:step]`, and filters
//! `[?(@.a.b == "x")]` with `== != < > <= >=` against string, number or
//! boolean literals, or `[?(@.a)]` for existence. Missing keys yield no
//! result (upstream `AllowMissingKeys(true)`), never an error.

use serde_json::Value;

/// Why a column's JSONPath was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JsonPathError {
    #[error("unrecognized column definition {0:?}: {1}")]
    Syntax(String, &'static str),
}

/// A parsed path: a sequence of steps applied to the object.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Wildcard,
    Index(i64),
    Slice(Option<i64>, Option<i64>, i64),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: Vec<Step>,
    op: Option<(Op, Literal)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl JsonPath {
    /// Parses a column path such as `.status.conditions[?(@.type=="Ready")].status`.
    pub fn parse(path: &str) -> Result<JsonPath, JsonPathError> {
        let err = |why| JsonPathError::Syntax(path.to_string(), why);
        let mut text = path.trim();
        if let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            text = inner.trim();
        }
        if text.is_empty() {
            return Err(err("empty path"));
        }
        let text = text.strip_prefix('$').unwrap_or(text);
        let mut p = Parser {
            chars: text.chars().collect(),
            pos: 0,
        };
        let steps = p.steps(false).map_err(err)?;
        if p.pos != p.chars.len() {
            return Err(err("unexpected character"));
        }
        Ok(JsonPath { steps })
    }

    /// Every value the path selects, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        apply(&self.steps, vec![root])
    }

    /// The first selected value, which is what a printer column shows.
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.find(root).into_iter().next()
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Steps until end of input, or (inside a filter) until an operator or `)`.
    fn steps(&mut self, in_filter: bool) -> Result<Vec<Step>, &'static str> {
        let mut steps = Vec::new();
        loop {
            match self.peek() {
                Some('.') => {
                    self.pos += 1;
                    if self.peek() == Some('.') {
                        return Err("recursive descent is not supported");
                    }
                    if self.eat('*') {
                        steps.push(Step::Wildcard);
                        continue;
                    }
                    let name = self.ident();
                    if name.is_empty() {
                        // A lone trailing "." (e.g. "{.}") selects the object itself.
                        if self.peek().is_none() && !in_filter {
                            continue;
                        }
                        return Err("empty field name");
                    }
                    steps.push(Step::Field(name));
                }
                Some('[') => {
                    self.pos += 1;
                    steps.push(self.bracket()?);
                }
                _ => return Ok(steps),
            }
        }
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == '.'
                || c == '['
                || c == ']'
                || c == ')'
                || c.is_whitespace()
                || "=!<>".contains(c)
            {
                break;
            }
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn bracket(&mut self) -> Result<Step, &'static str> {
        self.skip_ws();
        let step = match self.peek() {
            Some('*') => {
                self.pos += 1;
                Step::Wildcard
            }
            Some('\'') | Some('"') => Step::Field(self.quoted()?),
            Some('?') => {
                self.pos += 1;
                self.filter()?
            }
            _ => self.index_or_slice()?,
        };
        self.skip_ws();
        if !self.eat(']') {
            return Err("missing ']'");
        }
        Ok(step)
    }

    fn quoted(&mut self) -> Result<String, &'static str> {
        let quote = self.peek().ok_or("missing quote")?;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string"),
                Some('\\') => {
                    self.pos += 1;
                    let c = self.peek().ok_or("unterminated string")?;
                    out.push(c);
                    self.pos += 1;
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn int(&mut self) -> Result<Option<i64>, &'static str> {
        self.skip_ws();
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        self.skip_ws();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| "bad array index")
    }

    fn index_or_slice(&mut self) -> Result<Step, &'static str> {
        let first = self.int()?;
        if !self.eat(':') {
            return first.map(Step::Index).ok_or("bad array index");
        }
        let end = self.int()?;
        let step = if self.eat(':') { self.int()? } else { None };
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err("slice step cannot be zero");
        }
        Ok(Step::Slice(first, end, step))
    }

    fn filter(&mut self) -> Result<Step, &'static str> {
        self.skip_ws();
        if !self.eat('(') {
            return Err("filter needs '('");
        }
        self.skip_ws();
        if !self.eat('@') {
            return Err("filter must start with '@'");
        }
        let left = self.steps(true)?;
        self.skip_ws();
        let op = if self.eat(')') {
            None
        } else {
            let op = self.op()?;
            self.skip_ws();
            let lit = self.literal()?;
            self.skip_ws();
            if !self.eat(')') {
                return Err("filter needs ')'");
            }
            Some((op, lit))
        };
        Ok(Step::Filter(Filter { left, op }))
    }

    fn op(&mut self) -> Result<Op, &'static str> {
        let two: String = self.chars[self.pos..(self.pos + 2).min(self.chars.len())]
            .iter()
            .collect();
        let (op, len) = match two.as_str() {
            "==" => (Op::Eq, 2),
            "!=" => (Op::Ne, 2),
            "<=" => (Op::Le, 2),
            ">=" => (Op::Ge, 2),
            _ => match self.peek() {
                Some('<') => (Op::Lt, 1),
                Some('>') => (Op::Gt, 1),
                _ => return Err("unknown filter operator"),
            },
        };
        self.pos += len;
        Ok(op)
    }

    fn literal(&mut self) -> Result<Literal, &'static str> {
        match self.peek() {
            Some('\'') | Some('"') => Ok(Literal::Str(self.quoted()?)),
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c != ')' && !c.is_whitespace()) {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                match word.as_str() {
                    "true" => Ok(Literal::Bool(true)),
                    "false" => Ok(Literal::Bool(false)),
                    _ => word
                        .parse()
                        .map(Literal::Num)
                        .map_err(|_| "bad filter literal"),
                }
            }
        }
    }
}

fn apply<'a>(steps: &[Step], mut current: Vec<&'a Value>) -> Vec<&'a Value> {
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => next.extend(v.get(name.as_str())),
                Step::Wildcard => match v {
                    Value::Array(items) => next.extend(items.iter()),
                    Value::Object(map) => {
                        let mut keys: Vec<&String> = map.keys().collect();
                        keys.sort();
                        next.extend(keys.into_iter().filter_map(|k| map.get(k)));
                    }
                    _ => {}
                },
                Step::Index(i) => {
                    if let Some(items) = v.as_array() {
                        let len = items.len() as i64;
                        let idx = if *i < 0 { i + len } else { *i };
                        if (0..len).contains(&idx) {
                            next.push(&items[idx as usize]);
                        }
                    }
                }
                Step::Slice(start, end, stride) => {
                    if let Some(items) = v.as_array() {
                        next.extend(slice(items, *start, *end, *stride));
                    }
                }
                Step::Filter(f) => {
                    if let Some(items) = v.as_array() {
                        next.extend(items.iter().filter(|item| f.matches(item)));
                    }
                }
            }
        }
        current = next;
    }
    current
}

fn slice(items: &[Value], start: Option<i64>, end: Option<i64>, stride: i64) -> Vec<&Value> {
    let len = items.len() as i64;
    let clamp = |i: i64| {
        let i = if i < 0 { i + len } else { i };
        i.clamp(0, len)
    };
    let mut out = Vec::new();
    if stride > 0 {
        let (mut i, e) = (start.map_or(0, clamp), end.map_or(len, clamp));
        while i < e {
            out.push(&items[i as usize]);
            i += stride;
        }
    } else {
        let mut i = start.map_or(len - 1, |s| clamp(s).min(len - 1));
        let e = end.map_or(-1, clamp);
        while i > e && i >= 0 {
            out.push(&items[i as usize]);
            i += stride;
        }
    }
    out
}

impl Filter {
    fn matches(&self, item: &Value) -> bool {
        let lefts = apply(&self.left, vec![item]);
        let Some((op, lit)) = &self.op else {
            return !lefts.is_empty();
        };
        lefts.iter().any(|left| compare(left, *op, lit))
    }
}

fn compare(left: &Value, op: Op, lit: &Literal) -> bool {
    use std::cmp::Ordering;
    let ord = match (left, lit) {
        (Value::String(a), Literal::Str(b)) => a.as_str().cmp(b.as_str()),
        (Value::Number(a), Literal::Num(b)) => match a.as_f64().and_then(|a| a.partial_cmp(b)) {
            Some(o) => o,
            None => return false,
        },
        (Value::Bool(a), Literal::Bool(b)) => {
            return match op {
                Op::Eq => a == b,
                Op::Ne => a != b,
                _ => false,
            }
        }
        // Upstream errors on mismatched types, which leaves the cell empty.
        _ => return false,
    };
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Gt => ord == Ordering::Greater,
        Op::Le => ord != Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn first(path: &str, v: &Value) -> Option<Value> {
        JsonPath::parse(path).expect("valid path").first(v).cloned()
    }

    fn obj() -> Value {
        json!({
            "metadata": {"name": "x", "creationTimestamp": "2024-05-01T10:00:00Z",
                         "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": 3, "ratio": 0.5, "paused": false,
                     "template": {"containers": [{"image": "a"}, {"image": "b"}]}},
            "status": {"conditions": [
                {"type": "Progressing", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "Oops"}
            ]},
            "items": [{"x": 1}, {"x": 2}, {"x": 3}]
        })
    }

    #[test]
    fn dotted_fields_and_indexes_select_values() {
        let o = obj();
        assert_eq!(first(".spec.replicas", &o), Some(json!(3)));
        assert_eq!(first("{.spec.replicas}", &o), Some(json!(3)));
        assert_eq!(first("$.spec.replicas", &o), Some(json!(3)));
        assert_eq!(first(".items[0].x", &o), Some(json!(1)));
        assert_eq!(first(".items[-1].x", &o), Some(json!(3)));
        assert_eq!(
            first(".spec.template.containers[*].image", &o),
            Some(json!("a"))
        );
        assert_eq!(first(".items[1:].x", &o), Some(json!(2)));
        assert_eq!(
            first(".metadata.labels['app.kubernetes.io/name']", &o),
            Some(json!("web"))
        );
    }

    #[test]
    fn filters_pick_the_matching_list_entry() {
        let o = obj();
        assert_eq!(
            first(r#".status.conditions[?(@.type=="Ready")].status"#, &o),
            Some(json!("False"))
        );
        assert_eq!(
            first(".status.conditions[?(@.type == 'Ready')].reason", &o),
            Some(json!("Oops"))
        );
        assert_eq!(
            first(".status.conditions[?(@.reason)].type", &o),
            Some(json!("Ready"))
        );
        assert_eq!(first(".items[?(@.x > 1)].x", &o), Some(json!(2)));
        assert_eq!(
            first(r#".status.conditions[?(@.type=="Gone")].status"#, &o),
            None
        );
    }

    #[test]
    fn missing_keys_and_out_of_range_indexes_select_nothing() {
        let o = obj();
        assert_eq!(first(".spec.nope.deeper", &o), None);
        assert_eq!(first(".items[7].x", &o), None);
        assert_eq!(first(".spec.replicas.x", &o), None);
    }

    #[test]
    fn malformed_paths_are_rejected() {
        assert!(JsonPath::parse(".items[").is_err());
        assert!(JsonPath::parse(".items[?(@.a ~ 1)]").is_err());
        assert!(JsonPath::parse("..name").is_err());
        assert!(JsonPath::parse("").is_err());
    }
}
