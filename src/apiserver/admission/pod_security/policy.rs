//! Pod Security Standards policy: levels, versions, the namespace labels that pick them, and
//! the versioned check registry that evaluates one pod against one `level:version`, as
//! upstream's `pod-security-admission/api` and `policy/registry.go` define them.
//!
//! Invariant: a level-version evaluates exactly the checks upstream's registry holds for it
//! (baseline checks, then restricted ones, each group sorted by check id; a restricted check
//! replaces the baseline checks it overrides), so refusals list violations in upstream's order.

use super::{baseline, restricted};
use crate::api::validation::FieldError;
use serde_json::Value;
use std::collections::BTreeMap;

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    fn parse(s: &str) -> Result<Level, &'static str> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err("must be one of privileged, baseline, restricted"),
        }
    }
}

/// `latest`, or `v1.<minor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    Minor(u32),
    Latest,
}

impl Version {
    fn parse(s: &str) -> Result<Version, &'static str> {
        const BAD: &str = r#"must be "latest" or "v1.x""#;
        if s == "latest" {
            return Ok(Version::Latest);
        }
        let minor = s.strip_prefix("v1.").ok_or(BAD)?;
        // Upstream's `^v1\.([0-9]|[1-9][0-9]*)$`: no leading zeros, no sign.
        if minor.is_empty()
            || !minor.bytes().all(|b| b.is_ascii_digit())
            || (minor.len() > 1 && minor.starts_with('0'))
        {
            return Err(BAD);
        }
        minor.parse().map(Version::Minor).map_err(|_| BAD)
    }

    /// The minor version whose checks apply (latest and future versions use the newest).
    fn effective_minor(self) -> u32 {
        match self {
            Version::Latest => MAX_MINOR,
            Version::Minor(m) => m.min(MAX_MINOR),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::Minor(m) => write!(f, "v1.{m}"),
        }
    }
}

/// The newest minor version any check changed in (upstream's registry `maxVersion`).
const MAX_MINOR: u32 = 35;

/// One mode's `level:version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl std::fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

const PRIVILEGED_LATEST: LevelVersion = LevelVersion {
    level: Level::Privileged,
    version: Version::Latest,
};

/// A namespace's policy for the three modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Policy {
    pub fn fully_privileged(&self) -> bool {
        self.enforce.level == Level::Privileged
            && self.audit.level == Level::Privileged
            && self.warn.level == Level::Privileged
    }
}

const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// Whether a label key is one of the policy labels (changes to others cannot change the policy).
pub fn is_policy_label(key: &str) -> bool {
    key.starts_with(LABEL_PREFIX)
}

/// The policy of a namespace with these labels, from kube-apiserver's default
/// (`privileged:latest` for every mode), with the label errors upstream reports.
/// Like upstream, an invalid audit or warn level fails open (privileged) and an enforce label
/// alone also sets warn when warn is not labelled and would be less strict.
pub fn policy_of(labels: Option<&serde_json::Map<String, Value>>) -> (Policy, Vec<FieldError>) {
    let mut p = Policy {
        enforce: PRIVILEGED_LATEST,
        audit: PRIVILEGED_LATEST,
        warn: PRIVILEGED_LATEST,
    };
    let mut errs = Vec::new();
    let Some(labels) = labels else {
        return (p, errs);
    };
    let get = |mode: &str| {
        labels
            .get(&format!("{LABEL_PREFIX}{mode}"))
            .and_then(Value::as_str)
    };
    let mut err = |mode: &str, value: &str, why: &str| {
        errs.push(FieldError::invalid(
            &format!("metadata.labels[{LABEL_PREFIX}{mode}]"),
            value,
            why,
        ))
    };
    let mut has_enforce_level = false;
    if let Some(v) = get("enforce") {
        match Level::parse(v) {
            Ok(l) => {
                p.enforce.level = l;
                has_enforce_level = true;
            }
            Err(e) => {
                // Upstream parses an invalid enforce level as restricted (fail closed).
                p.enforce.level = Level::Restricted;
                err("enforce", v, e);
            }
        }
    }
    for (mode, slot) in [("enforce", 0), ("audit", 1), ("warn", 2)] {
        if slot > 0 {
            if let Some(v) = get(mode) {
                let level = Level::parse(v).unwrap_or_else(|e| {
                    err(mode, v, e);
                    Level::Privileged
                });
                if slot == 1 {
                    p.audit.level = level;
                } else {
                    p.warn.level = level;
                }
            }
        }
        let key = format!("{mode}-version");
        if let Some(v) = get(&key) {
            let version = Version::parse(v).unwrap_or_else(|e| {
                err(&key, v, e);
                Version::Latest
            });
            match slot {
                0 => p.enforce.version = version,
                1 => p.audit.version = version,
                _ => p.warn.version = version,
            }
        }
    }
    if get("warn").is_none() && has_enforce_level && p.enforce.level > p.warn.level {
        p.warn.level = p.enforce.level;
        if get("warn-version").is_none() {
            p.warn.version = p.enforce.version;
        }
    }
    (p, errs)
}

/// One failed check: upstream's `ForbiddenReason` and `ForbiddenDetail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

impl Violation {
    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Violation {
        Violation {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// What a check sees: the pod's (or pod template's) metadata and spec.
pub struct PodView<'a> {
    pub meta: &'a Value,
    pub spec: &'a Value,
}

impl<'a> PodView<'a> {
    /// Init containers, containers, then ephemeral containers (upstream's visit order).
    pub fn containers(&self) -> impl Iterator<Item = &'a Value> + 'a {
        let list = |k: &str| {
            self.spec[k]
                .as_array()
                .map(|a| a.iter())
                .into_iter()
                .flatten()
        };
        list("initContainers")
            .chain(list("containers"))
            .chain(list("ephemeralContainers"))
    }

    pub fn annotations(&self) -> Option<&'a serde_json::Map<String, Value>> {
        self.meta["annotations"].as_object()
    }

    pub fn is_windows(&self) -> bool {
        self.spec["os"]["name"] == "windows"
    }

    /// `spec.hostUsers: false`: a user-namespaced pod, for which 1.35 relaxes some checks.
    pub fn user_namespaced(&self) -> bool {
        self.spec["hostUsers"] == Value::Bool(false)
    }
}

pub type CheckFn = fn(&PodView<'_>) -> Option<Violation>;

/// One check with its versions (minimum minor version → implementation, ascending).
pub struct Check {
    pub id: &'static str,
    pub level: Level,
    pub versions: &'static [(u32, CheckFn)],
    /// Baseline check ids this restricted check replaces.
    pub overrides: &'static [&'static str],
}

impl Check {
    fn at(&self, minor: u32) -> Option<CheckFn> {
        self.versions
            .iter()
            .rev()
            .find(|(min, _)| *min <= minor)
            .map(|(_, f)| *f)
    }
}

/// Every check, baseline ones then restricted ones, each group sorted by id (upstream's
/// order of evaluation and of the messages).
fn registry() -> impl Iterator<Item = &'static Check> {
    baseline::CHECKS.iter().chain(restricted::CHECKS.iter())
}

/// Evaluates a pod against one level-version; the violations in upstream's order.
pub fn evaluate(lv: LevelVersion, pod: &PodView<'_>) -> Vec<Violation> {
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    let minor = lv.version.effective_minor();
    let mut overridden: Vec<&str> = Vec::new();
    if lv.level == Level::Restricted {
        for c in restricted::CHECKS.iter().filter(|c| c.at(minor).is_some()) {
            overridden.extend(c.overrides);
        }
    }
    registry()
        .filter(|c| c.level <= lv.level && !overridden.contains(&c.id))
        .filter_map(|c| c.at(minor))
        .filter_map(|f| f(pod))
        .collect()
}

/// Upstream's aggregate detail: `reason (detail), reason (detail), ...`.
pub fn forbidden_detail(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Upstream's aggregate reason: the reasons joined with `, `.
pub fn forbidden_reason(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Caches evaluations of one pod by level-version (a pod is evaluated for up to three modes).
#[derive(Default)]
pub struct Evaluations(BTreeMap<String, Vec<Violation>>);

impl Evaluations {
    pub fn get(&mut self, lv: LevelVersion, pod: &PodView<'_>) -> &[Violation] {
        self.0
            .entry(lv.to_string())
            .or_insert_with(|| evaluate(lv, pod))
    }
}

// ---- helpers shared by the checks (upstream's policy/helpers.go) ----

/// `"a", "b"`.
pub fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn pluralize<'s>(singular: &'s str, plural: &'s str, n: usize) -> &'s str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

/// `container "a"` / `containers "a", "b"`.
pub fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// A container's name (empty when missing, which validation does not allow).
pub fn name_of(c: &Value) -> String {
    c["name"].as_str().unwrap_or_default().to_owned()
}

/// Go's `%q` of a string, close enough for label-ish values (JSON escaping).
pub fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}
