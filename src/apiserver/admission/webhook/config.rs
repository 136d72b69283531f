//! One webhook of a stored Mutating/ValidatingWebhookConfiguration, parsed once per
//! snapshot with upstream's v1 defaults applied (the stored object may lack them), so the
//! per-request work is matching and calling only.

use super::client::{ClientFor, Target};
use crate::api::selector::LabelSelector;
use serde_json::Value;
use std::time::Duration;

/// Which of the two plugins a configuration belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Mutating,
    Validating,
}

impl Flavor {
    /// The configuration kind's plural (its resource in admissionregistration.k8s.io/v1).
    pub fn plural(self) -> &'static str {
        match self {
            Flavor::Mutating => "mutatingwebhookconfigurations",
            Flavor::Validating => "validatingwebhookconfigurations",
        }
    }
}

/// Upstream's default and longest webhook timeouts.
const DEFAULT_TIMEOUT_SECS: u64 = 10;
const MAX_TIMEOUT_SECS: u64 = 30;

/// `scope` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Cluster,
    Namespaced,
}

/// One `rules[]` entry (`RuleWithOperations`).
#[derive(Debug, Clone)]
pub struct Rule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    /// `resource`, `resource/subresource`, `*`, `*/status`, `resource/*`.
    pub resources: Vec<String>,
    pub scope: Scope,
}

/// One webhook, ready to match and call.
pub struct Hook {
    /// Name of the configuration holding it.
    pub configuration: String,
    pub name: String,
    /// Identity across the reinvocation round: configuration name and index.
    pub uid: String,
    pub rules: Vec<Rule>,
    /// `failurePolicy: Ignore` (default Fail).
    pub fail_open: bool,
    /// `matchPolicy: Equivalent` (the default) rather than Exact.
    pub equivalent: bool,
    /// A selector that does not parse is an internal error when the webhook is considered,
    /// as upstream's `GetParsedNamespaceSelector`.
    pub namespace_selector: Result<LabelSelector, String>,
    pub object_selector: Result<LabelSelector, String>,
    /// `sideEffects`, as written (`None`, `NoneOnDryRun`, `Some`, `Unknown`), if set.
    pub side_effects: Option<String>,
    pub timeout: Duration,
    pub review_versions: Vec<String>,
    /// `reinvocationPolicy: IfNeeded` (mutating webhooks only; default Never).
    pub reinvoke_if_needed: bool,
    /// Names of the `matchConditions` (CEL, not evaluated here: see the module doc).
    pub match_conditions: Vec<String>,
    pub target: Target,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn selector(v: &Value) -> Result<LabelSelector, String> {
    if v.is_null() {
        // Defaulted to `{}` upstream: everything.
        return Ok(LabelSelector::everything());
    }
    LabelSelector::from_json(v).map_err(|e| e.to_string())
}

fn rule(v: &Value) -> Rule {
    Rule {
        operations: strings(&v["operations"]),
        api_groups: strings(&v["apiGroups"]),
        api_versions: strings(&v["apiVersions"]),
        resources: strings(&v["resources"]),
        scope: match v["scope"].as_str() {
            Some("Cluster") => Scope::Cluster,
            Some("Namespaced") => Scope::Namespaced,
            _ => Scope::All,
        },
    }
}

/// The webhooks of one stored configuration, in order. `client_for` gives the HTTPS client
/// for a `caBundle` and server name (shared between webhooks trusting the same CAs).
pub fn hooks_of(flavor: Flavor, config: &Value, client_for: &mut ClientFor<'_>) -> Vec<Hook> {
    let configuration = config["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let Some(webhooks) = config["webhooks"].as_array() else {
        return Vec::new();
    };
    webhooks
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let timeout = w["timeoutSeconds"]
                .as_u64()
                .unwrap_or(DEFAULT_TIMEOUT_SECS)
                .clamp(1, MAX_TIMEOUT_SECS);
            Hook {
                configuration: configuration.clone(),
                name: w["name"].as_str().unwrap_or_default().to_owned(),
                uid: format!("{configuration}/{i}"),
                rules: w["rules"]
                    .as_array()
                    .map(|a| a.iter().map(rule).collect())
                    .unwrap_or_default(),
                fail_open: w["failurePolicy"].as_str() == Some("Ignore"),
                equivalent: w["matchPolicy"].as_str() != Some("Exact"),
                namespace_selector: selector(&w["namespaceSelector"]),
                object_selector: selector(&w["objectSelector"]),
                side_effects: w["sideEffects"].as_str().map(str::to_owned),
                timeout: Duration::from_secs(timeout),
                review_versions: strings(&w["admissionReviewVersions"]),
                reinvoke_if_needed: flavor == Flavor::Mutating
                    && w["reinvocationPolicy"].as_str() == Some("IfNeeded"),
                match_conditions: w["matchConditions"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
                target: Target::from_client_config(&w["clientConfig"], client_for),
            }
        })
        .collect()
}
