//! The node's heartbeat Lease (`kube-node-lease/<node>`), as upstream's kubelet keeps it
//! (`pkg/kubelet/nodelease`, `component-helpers/apimachinery/lease`): holderIdentity = the
//! node name, leaseDurationSeconds 40, renewTime moved forward every 10 s (a quarter of the
//! duration), and an ownerReference to the Node so the Lease goes with it.
//!
//! [`desired`] computes the Lease from the one stored (pure, tested with a fixed clock);
//! [`run`] is the renew loop.
//!
//! Invariant: a renewal only ever writes this node's own Lease, with an update
//! conditioned on the resourceVersion read (a conflict re-reads), so it never overwrites
//! a newer Lease.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const NAMESPACE: &str = "kube-node-lease";
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the Lease is renewed (upstream: 0.25 × the duration).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// The pause after a failed renewal before the next try (upstream's retry is 200 ms
/// doubling to 7 s; one fixed step keeps this simple and well within the duration).
const RETRY: Duration = Duration::from_millis(500);

/// The Lease to write at `now` for `node` (uid `node_uid`), given the stored one.
pub fn desired(
    node: &str,
    node_uid: Option<&str>,
    existing: Option<&Lease>,
    now: MicroTime,
) -> Lease {
    let mut lease = existing.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(node.to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(node.to_owned());
    spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
    spec.renew_time = Some(now);
    if let Some(uid) = node_uid {
        let owners = lease.metadata.owner_references.get_or_insert_with(Vec::new);
        if !owners.iter().any(|o| o.kind == "Node" && o.uid == uid) {
            owners.push(OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.to_owned(),
                uid: uid.to_owned(),
                ..OwnerReference::default()
            });
        }
    }
    lease
}

/// Creates or renews the Lease once.
pub async fn renew(
    api: &Api<Lease>,
    node: &str,
    node_uid: Option<&str>,
) -> Result<Lease, kube::Error> {
    let now = || MicroTime(k8s_openapi::jiff::Timestamp::now());
    let existing = api.get_opt(node).await?;
    let lease = desired(node, node_uid, existing.as_ref(), now());
    match existing {
        Some(_) => api.replace(node, &PostParams::default(), &lease).await,
        None => api.create(&PostParams::default(), &lease).await,
    }
}

/// Renews the Lease every [`RENEW_INTERVAL`] until `shutdown`. Failures are logged and
/// retried: a node that cannot reach the server shows as not ready there, which is the
/// truth.
pub async fn run(
    client: kube::Client,
    node: String,
    node_uid: Option<String>,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    loop {
        let wait = match renew(&api, &node, node_uid.as_deref()).await {
            Ok(_) => RENEW_INTERVAL,
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "renewing the node lease failed");
                RETRY
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> MicroTime {
        MicroTime(s.parse().unwrap())
    }

    #[test]
    fn a_new_lease_names_its_holder_and_owner() {
        let l = desired("n1", Some("uid-1"), None, t("2026-01-01T00:00:00Z"));
        assert_eq!(l.metadata.namespace.as_deref(), Some(NAMESPACE));
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        let owners = l.metadata.owner_references.unwrap();
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].uid.as_str()),
            ("Node", "uid-1")
        );
    }

    #[test]
    fn renewal_moves_renew_time_and_keeps_the_rest() {
        let first = desired("n1", Some("uid-1"), None, t("2026-01-01T00:00:00Z"));
        let mut stored = first.clone();
        stored.metadata.resource_version = Some("7".into());
        let second = desired(
            "n1",
            Some("uid-1"),
            Some(&stored),
            t("2026-01-01T00:00:10Z"),
        );
        assert_eq!(second.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(second.metadata.owner_references.as_ref().unwrap().len(), 1);
        assert_eq!(
            second.spec.unwrap().renew_time,
            Some(t("2026-01-01T00:00:10Z"))
        );
    }
}
