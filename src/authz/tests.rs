//! The cluster authorizer over the real bootstrap policy.

use super::*;
use crate::apiserver::AUTHENTICATED_GROUP;

fn bootstrap_index() -> Index {
    let p = bootstrap_policy::policy().unwrap();
    fn arcs<T: Clone>(v: &[T]) -> Vec<Arc<T>> {
        v.iter().cloned().map(Arc::new).collect()
    }
    Index::build(
        &arcs(&p.cluster_roles),
        &arcs(&p.roles),
        &arcs(&p.cluster_role_bindings),
        &arcs(&p.role_bindings),
    )
}

fn attrs<'a>(
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    ns: Option<&'a str>,
) -> AuthzAttributes<'a> {
    AuthzAttributes {
        verb,
        group,
        resource,
        subresource: None,
        namespace: ns,
        name: None,
        field_selector: None,
    }
}

#[test]
fn masters_may_do_anything_without_a_binding() {
    let a = ClusterAuthorizer::with_index(Index::default());
    let admin = UserInfo::new("system:admin", &[MASTERS_GROUP]);
    assert_eq!(
        a.authorize(&admin, &attrs("escalate", "x", "y", None)),
        Decision::Allow
    );
    assert_eq!(
        a.authorize_non_resource(&admin, "get", "/metrics"),
        Decision::Allow
    );
    assert!(!a.rules_for(&admin, "default").rules.is_empty());
}

#[test]
fn authenticated_users_get_discovery_and_self_reviews_only() {
    let a = ClusterAuthorizer::with_index(bootstrap_index());
    let bob = UserInfo::new("bob", &[AUTHENTICATED_GROUP]);
    assert_eq!(
        a.authorize_non_resource(&bob, "get", "/apis/apps/v1"),
        Decision::Allow
    );
    assert_eq!(
        a.authorize_non_resource(&bob, "get", "/version"),
        Decision::Allow
    );
    assert_eq!(
        a.authorize(
            &bob,
            &attrs(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                None
            )
        ),
        Decision::Allow
    );
    assert!(matches!(
        a.authorize(&bob, &attrs("list", "", "pods", Some("default"))),
        Decision::Deny(_)
    ));
    assert!(matches!(
        a.authorize_non_resource(&bob, "get", "/metrics"),
        Decision::Deny(_)
    ));
}

#[test]
fn anonymous_reaches_only_the_public_info() {
    let a = ClusterAuthorizer::with_index(bootstrap_index());
    let anon = UserInfo::new("system:anonymous", &["system:unauthenticated"]);
    for path in ["/healthz", "/livez", "/readyz", "/version", "/version/"] {
        assert_eq!(
            a.authorize_non_resource(&anon, "get", path),
            Decision::Allow,
            "{path}"
        );
    }
    assert!(matches!(
        a.authorize_non_resource(&anon, "get", "/api"),
        Decision::Deny(_)
    ));
    assert!(matches!(
        a.authorize_non_resource(&anon, "get", "/openapi/v2"),
        Decision::Deny(_)
    ));
    assert!(matches!(
        a.authorize(
            &anon,
            &attrs(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                None
            )
        ),
        Decision::Deny(_)
    ));
}

#[test]
fn in_process_controllers_hold_what_they_do() {
    let a = ClusterAuthorizer::with_index(bootstrap_index());
    let ns = controller_identity("namespace-controller");
    assert_eq!(
        a.authorize(
            &ns,
            &attrs("deletecollection", "apps", "deployments", Some("x"))
        ),
        Decision::Allow
    );
    let finalize = AuthzAttributes {
        subresource: Some("finalize"),
        ..attrs("update", "", "namespaces", None)
    };
    assert_eq!(a.authorize(&ns, &finalize), Decision::Allow);
    assert_eq!(
        a.authorize_non_resource(&ns, "get", "/apis"),
        Decision::Allow,
        "discovery"
    );
    let gc = controller_identity("generic-garbage-collector");
    assert_eq!(
        a.authorize(&gc, &attrs("patch", "example.com", "widgets", Some("x"))),
        Decision::Allow
    );
    assert_eq!(
        a.authorize(&gc, &attrs("delete", "", "configmaps", Some("x"))),
        Decision::Allow
    );
    assert!(matches!(
        a.authorize(&gc, &attrs("create", "", "pods", Some("x"))),
        Decision::Deny(_)
    ));
}
