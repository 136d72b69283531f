//! Which resource types exist, as the API's aggregated discovery reports them (built-in and
//! custom), for controllers that act on every type (namespace deletion, garbage collection).

use super::ControllerError;
use kube::api::{ApiResource, GroupVersionKind};
use kube::discovery::{verbs, ApiCapabilities, Discovery, Scope};

/// One resource type in its preferred version.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub ar: ApiResource,
    pub namespaced: bool,
    verbs: Vec<String>,
}

impl ResourceType {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

/// A discovery snapshot.
pub struct ResourceTypes {
    discovery: Discovery,
    preferred: Vec<ResourceType>,
}

impl ResourceTypes {
    pub async fn discover(client: &kube::Client) -> Result<ResourceTypes, ControllerError> {
        let discovery = Discovery::new(client.clone()).run_aggregated().await?;
        let mut preferred = Vec::new();
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                preferred.push(to_type(ar, &caps));
            }
        }
        Ok(ResourceTypes {
            discovery,
            preferred,
        })
    }

    /// Every type in its preferred version (one entry per stored resource).
    pub fn all(&self) -> &[ResourceType] {
        &self.preferred
    }

    /// What the garbage collector tracks: types that can be listed, watched and deleted,
    /// but events (core and `events.k8s.io`), as upstream's default ignored resources.
    /// Events never own anything and are the most numerous objects of a busy cluster:
    /// tracking them would keep every event's metadata twice (one informer per group) plus
    /// a graph node, for nothing.
    pub fn collectable(&self) -> impl Iterator<Item = &ResourceType> {
        self.preferred
            .iter()
            .filter(|t| t.supports(verbs::LIST) && t.supports(verbs::WATCH))
            .filter(|t| t.supports(verbs::DELETE))
            .filter(|t| !is_event(&t.ar))
    }

    /// The type an owner reference (`apiVersion` + `kind`) names, in that exact version.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        self.discovery
            .resolve_gvk(&gvk)
            .map(|(ar, caps)| to_type(ar, &caps))
    }
}

fn is_event(ar: &ApiResource) -> bool {
    ar.plural == "events" && (ar.group.is_empty() || ar.group == "events.k8s.io")
}

fn to_type(ar: ApiResource, caps: &ApiCapabilities) -> ResourceType {
    ResourceType {
        ar,
        namespaced: caps.scope == Scope::Namespaced,
        verbs: caps.operations.clone(),
    }
}
