//! The bootstrap token cleaner (upstream's `tokencleaner`, service account `token-cleaner`):
//! a bootstrap token Secret (`kube-system`, type `bootstrap.kubernetes.io/token`) is deleted
//! once its `expiration` has passed, so expired join tokens (`skiff token create --ttl`) do
//! not pile up. A token not yet expired is looked at again when it expires.
//!
//! As upstream: an `expiration` that does not parse counts as expired (the authenticator
//! refuses it too), and the delete carries the Secret's UID as a precondition so a token
//! re-created under the same name is never removed by mistake.

use super::{run_on_informer, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::apiserver::authn::bootstrap::SECRET_TYPE;
use crate::informers::Change;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const NAMESPACE: &str = "kube-system";

pub struct BootstrapTokenCleaner {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl BootstrapTokenCleaner {
    pub fn new(ctx: Context) -> BootstrapTokenCleaner {
        BootstrapTokenCleaner {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let secrets = self.ctx.informers.typed::<Secret>();
        let reconciler = Arc::new(Reconcile {
            api: Api::namespaced(self.ctx.client_for("token-cleaner"), NAMESPACE),
            secrets: secrets.store(),
        });
        let key_of = |c: &Change<Secret>| match c {
            Change::Applied(s) if is_bootstrap_token(s) => s.metadata.name.clone(),
            _ => None,
        };
        run_on_informer(secrets, key_of, reconciler, self.queue, 1, shutdown).await
    }
}

fn is_bootstrap_token(s: &Secret) -> bool {
    s.metadata.namespace.as_deref() == Some(NAMESPACE) && s.type_.as_deref() == Some(SECRET_TYPE)
}

/// How long until `secret` expires: `None` when it never does, zero when it has.
pub fn time_left(secret: &Secret, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let raw = secret.data.as_ref()?.get("expiration")?;
    let text = String::from_utf8_lossy(&raw.0);
    match chrono::DateTime::parse_from_rfc3339(text.trim()) {
        Ok(t) => Some(
            (t.with_timezone(&chrono::Utc) - now)
                .to_std()
                .unwrap_or_default(),
        ),
        Err(_) => Some(Duration::ZERO),
    }
}

struct Reconcile {
    api: Api<Secret>,
    secrets: Store<Secret>,
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "bootstrap-token-cleaner";

    async fn reconcile(&self, name: &String) -> Result<Action, ControllerError> {
        let Some(secret) = self.secrets.get(&ObjectRef::new(name).within(NAMESPACE)) else {
            return Ok(Action::Done);
        };
        if !is_bootstrap_token(&secret) {
            return Ok(Action::Done);
        }
        match time_left(&secret, chrono::Utc::now()) {
            None => Ok(Action::Done),
            Some(left) if !left.is_zero() => Ok(Action::RequeueAfter(left)),
            Some(_) => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: secret.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match self.api.delete(name, &dp).await {
                    Ok(_) => {
                        tracing::info!(secret = %name, "deleted an expired bootstrap token");
                        Ok(Action::Done)
                    }
                    // Gone already, or re-created under the same name (a new UID).
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::Done),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testing::{eventually, Cluster};
    use k8s_openapi::ByteString;
    use kube::api::{ObjectMeta, PostParams};

    fn token(name: &str, expiration: Option<&str>) -> Secret {
        let mut data = std::collections::BTreeMap::new();
        data.insert("token-id".to_string(), ByteString(b"abcdef".to_vec()));
        if let Some(e) = expiration {
            data.insert("expiration".to_string(), ByteString(e.as_bytes().to_vec()));
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NAMESPACE.into()),
                ..Default::default()
            },
            type_: Some(SECRET_TYPE.into()),
            data: Some(data),
            ..Default::default()
        }
    }

    #[test]
    fn time_left_is_none_without_expiration_and_zero_when_past_or_unparseable() {
        let now = chrono::Utc::now();
        assert_eq!(time_left(&token("a", None), now), None);
        assert_eq!(
            time_left(&token("a", Some("2000-01-01T00:00:00Z")), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            time_left(&token("a", Some("soon")), now),
            Some(Duration::ZERO)
        );
        let later = (now + chrono::Duration::seconds(90)).to_rfc3339();
        let left = time_left(&token("a", Some(&later)), now).expect("expires");
        assert!(left > Duration::from_secs(89) && left <= Duration::from_secs(90));
    }

    #[tokio::test]
    async fn expired_bootstrap_tokens_are_deleted_and_others_kept() {
        let cluster = Cluster::start().await;
        let api: Api<Secret> = Api::namespaced(cluster.client.clone(), NAMESPACE);
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
        for s in [
            token("bootstrap-token-old", Some("2020-01-01T00:00:00Z")),
            token("bootstrap-token-soon", Some(&soon)),
            token("bootstrap-token-forever", None),
        ] {
            api.create(&PostParams::default(), &s)
                .await
                .expect("create");
        }
        eventually(
            "the expired and then the expiring token are deleted",
            || async {
                api.get_opt("bootstrap-token-old")
                    .await
                    .expect("get")
                    .is_none()
                    && api
                        .get_opt("bootstrap-token-soon")
                        .await
                        .expect("get")
                        .is_none()
            },
        )
        .await;
        assert!(api
            .get_opt("bootstrap-token-forever")
            .await
            .expect("get")
            .is_some());
        cluster.stop().await;
    }
}
