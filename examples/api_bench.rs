//! Load generator for `scripts/bench.sh api`: creates ConfigMaps with concurrent clients,
//! lists them, measures watch delivery latency, and times the controllers: a cascading
//! delete of an owner with OBJECTS dependents (garbage collector) and the deletion of a
//! namespace holding OBJECTS objects (namespace controller), against a running skiff server.
//! Prints `name value unit` lines. The `quota` phase measures the same creates in a
//! namespace holding a ResourceQuota on `count/configmaps` (ResourceQuota admission charges
//! each create to the quota).
//!
//! The `rbac` phase repeats the creates as a user bound by a RoleBinding (impersonated by
//! the admin client, so each request also passes the impersonation check) with 1,000 Roles
//! and 1,000 RoleBindings present, and times one RBAC decision in-process.
//!
//! Usage: api_bench KUBECONFIG [OBJECTS] [CLIENTS] [api|controllers|quota|rbac]

mod common;

use common::{configmap, create_many, percentile};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::time::{Duration, Instant};

/// Lists in pages of 500 from `token` (or from the start); returns items and pages read.
async fn list_in_pages(
    api: &Api<ConfigMap>,
    mut token: Option<String>,
) -> anyhow::Result<(usize, usize)> {
    let (mut items, mut pages) = (0, 0);
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await?;
        items += page.items.len();
        pages += 1;
        token = page.metadata.continue_;
        if token.is_none() {
            return Ok((items, pages));
        }
    }
}

/// Lists the ConfigMaps of `ns` with `Accept: application/vnd.kubernetes.protobuf` and
/// decodes the answer; returns the number of items.
async fn list_protobuf(c: &Client, ns: &str) -> anyhow::Result<usize> {
    use http_body_util::BodyExt;
    use prost::Message;
    let req = http::Request::get(format!("/api/v1/namespaces/{ns}/configmaps"))
        .header(
            http::header::ACCEPT,
            "application/vnd.kubernetes.protobuf, application/json",
        )
        .body(Vec::new())?;
    let resp = c.send(req.map(kube::client::Body::from)).await?;
    anyhow::ensure!(resp.status() == 200, "protobuf list: {}", resp.status());
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(body.starts_with(b"k8s\0"), "not a protobuf answer");
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(&body[4..])?;
    let list =
        k8s_pb::api::core::v1::ConfigMapList::decode(unknown.raw.unwrap_or_default().as_slice())?;
    Ok(list.items.len())
}

async fn client(kubeconfig: &str) -> anyhow::Result<Client> {
    client_as(kubeconfig, None).await
}

/// A client of the kubeconfig's identity, impersonating `user` when given.
async fn client_as(kubeconfig: &str, user: Option<&str>) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    cfg.auth_info.impersonate = user.map(str::to_owned);
    Ok(Client::try_from(cfg)?)
}

/// `n` independent clients (own connections), for concurrent load.
async fn client_pool(kubeconfig: &str, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut cs = Vec::with_capacity(n);
    for _ in 0..n {
        cs.push(client(kubeconfig).await?);
    }
    Ok(cs)
}

/// The ConfigMaps a fresh namespace holds before the bench writes any: the root-CA
/// publisher's `kube-root-ca.crt`, once it has appeared (up to 3 s; servers without the
/// publisher have none). Counts below are of the bench's objects plus these.
async fn preexisting_configmaps(c: &Client, ns: &str) -> anyhow::Result<usize> {
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), ns);
    let start = Instant::now();
    while api.get_opt("kube-root-ca.crt").await?.is_none()
        && start.elapsed() < std::time::Duration::from_secs(3)
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(api.list(&ListParams::default()).await?.items.len())
}

async fn ensure_namespace(c: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(c.clone());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let kubeconfig = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "/etc/skiff/skiff.yaml".into());
    let objects: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let clients: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
    let phase = args.get(4).map(String::as_str).unwrap_or("api");

    let admin = client(&kubeconfig).await?;
    match phase {
        "api" => api(&admin, &kubeconfig, objects, clients).await,
        "controllers" => controllers(&admin, &kubeconfig, objects, clients).await,
        "quota" => quota(&admin, &kubeconfig, objects, clients).await,
        "rbac" => rbac(&admin, &kubeconfig, objects, clients).await,
        other => anyhow::bail!("unknown phase {other:?}: api, controllers, quota or rbac"),
    }
}

/// Creates, list, paged lists and watch latency.
async fn api(
    admin: &Client,
    kubeconfig: &str,
    objects: usize,
    clients: usize,
) -> anyhow::Result<()> {
    ensure_namespace(admin, "bench").await?;
    ensure_namespace(admin, "bench-watch").await?;
    let total = objects + preexisting_configmaps(admin, "bench").await?;

    // Creates: `clients` independent clients (own connections) pulling from one counter.
    let cs = client_pool(kubeconfig, clients).await?;
    let (lat, elapsed) =
        create_many(cs, "bench", objects, |i| configmap(format!("cm-{i:06}"))).await?;
    println!("api_create_per_s {:.0} creates/s", objects as f64 / elapsed);
    println!("api_create_p50_ms {:.2} ms", percentile(&lat, 0.50));
    println!("api_create_p99_ms {:.2} ms", percentile(&lat, 0.99));
    // Anchor: the upstream Kubernetes SLO for mutating API calls is p99 <= 1 s.
    println!(
        "api_create_p99_vs_upstream_slo_ratio {:.4} ratio",
        percentile(&lat, 0.99) / 1000.0
    );

    // List all of them (JSON, one request), best of 5 after one warm-up.
    let api: Api<ConfigMap> = Api::namespaced(admin.clone(), "bench");
    let mut best = f64::MAX;
    let mut count = 0;
    for _ in 0..6 {
        let t = Instant::now();
        let list = api.list(&ListParams::default()).await?;
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        count = list.items.len();
    }
    anyhow::ensure!(count == total, "list returned {count} of {total} objects");
    println!("api_list_10k_ms {best:.1} ms");

    // The same list in protobuf, as client-go typed clients ask for it (decoded with prost,
    // as the JSON one is decoded with serde).
    let mut best = f64::MAX;
    for _ in 0..6 {
        let t = Instant::now();
        let n = list_protobuf(admin, "bench").await?;
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        count = n;
    }
    anyhow::ensure!(
        count == total,
        "protobuf list returned {count} of {total} objects"
    );
    println!("api_list_10k_protobuf_ms {best:.1} ms");

    // The same list in pages of 500 (best of 3), then once more with 1000 creates in the
    // listed namespace between the first page and the rest: later pages are read at the
    // first page's revision, so they undo those writes and still see `objects` items.
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let (n, _) = list_in_pages(&api, None).await?;
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(n == total, "paged list returned {n} of {total} objects");
    }
    println!("api_list_10k_paged_ms {best:.1} ms");
    let first = api.list(&ListParams::default().limit(500)).await?;
    let pp = PostParams::default();
    for i in 0..1000 {
        api.create(&pp, &configmap(format!("late-{i:05}"))).await?;
    }
    let t = Instant::now();
    let (n, pages) = list_in_pages(&api, first.metadata.continue_.clone()).await?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let n = n + first.items.len();
    anyhow::ensure!(n == total, "snapshot pages returned {n} of {total} objects");
    anyhow::ensure!(pages + 1 == total.div_ceil(500), "{pages} later pages");
    println!("api_list_10k_later_pages_after_1k_writes_ms {ms:.1} ms");

    // Watch latency: time from sending a create to receiving its ADDED event.
    let wapi: Api<ConfigMap> = Api::namespaced(admin.clone(), "bench-watch");
    let rv = wapi
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = wapi
        .watch(&WatchParams::default().timeout(290), &rv)
        .await?
        .boxed();
    let capi: Api<ConfigMap> = Api::namespaced(client(kubeconfig).await?, "bench-watch");
    let mut wlat = Vec::new();
    for i in 0..1000 {
        let name = format!("w-{i:05}");
        let cm = configmap(name.clone());
        let pp = PostParams::default();
        let t = Instant::now();
        let create = capi.create(&pp, &cm);
        let wait = async {
            while let Some(ev) = stream.try_next().await? {
                if let WatchEvent::Added(cm) = ev {
                    if cm.metadata.name.as_deref() == Some(name.as_str()) {
                        return anyhow::Ok(t.elapsed());
                    }
                }
            }
            anyhow::bail!("watch ended")
        };
        let (created, seen) =
            tokio::join!(create, tokio::time::timeout(Duration::from_secs(10), wait));
        created?;
        wlat.push(seen??.as_secs_f64() * 1000.0);
    }
    wlat.sort_by(|a, b| a.total_cmp(b));
    println!("api_watch_p50_ms {:.2} ms", percentile(&wlat, 0.50));
    println!("api_watch_p99_ms {:.2} ms", percentile(&wlat, 0.99));
    Ok(())
}

/// Creates in a namespace with a ResourceQuota on `count/configmaps` (never exceeded).
async fn quota(
    admin: &Client,
    kubeconfig: &str,
    objects: usize,
    clients: usize,
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ResourceQuota;
    ensure_namespace(admin, "bench-quota").await?;
    let preexisting = preexisting_configmaps(admin, "bench-quota").await?;
    let api: Api<ResourceQuota> = Api::namespaced(admin.clone(), "bench-quota");
    let q: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "configmaps"},
        "spec": {"hard": {"count/configmaps": (objects * 2).to_string()}},
    }))?;
    api.create(&PostParams::default(), &q).await?;
    // The quota controller fills in the status; until then the quota refuses creates.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = api.get("configmaps").await?;
        if q.status
            .and_then(|s| s.used)
            .is_some_and(|u| u.contains_key("count/configmaps"))
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the quota's status was never set"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cs = client_pool(kubeconfig, clients).await?;
    let (lat, elapsed) = create_many(cs, "bench-quota", objects, |i| {
        configmap(format!("cm-{i:06}"))
    })
    .await?;
    println!(
        "api_create_quota_per_s {:.0} creates/s",
        objects as f64 / elapsed
    );
    println!("api_create_quota_p50_ms {:.2} ms", percentile(&lat, 0.50));
    println!("api_create_quota_p99_ms {:.2} ms", percentile(&lat, 0.99));
    let used = api
        .get("configmaps")
        .await?
        .status
        .and_then(|s| s.used)
        .unwrap_or_default();
    let counted = used
        .get("count/configmaps")
        .map(|q| q.0.clone())
        .unwrap_or_default();
    // Canonical quantities print 10000 as `10k`.
    let total = objects + preexisting;
    let expected = if total.is_multiple_of(1000) {
        format!("{}k", total / 1000)
    } else {
        total.to_string()
    };
    anyhow::ensure!(
        counted == expected,
        "quota counted {counted} of {objects} creates"
    );
    Ok(())
}

/// The controllers: a cascading delete and a namespace deletion of `objects` objects each.
async fn controllers(
    admin: &Client,
    kubeconfig: &str,
    objects: usize,
    clients: usize,
) -> anyhow::Result<()> {
    // Garbage collection: delete one owner with `objects` dependents; time until the last
    // dependent's DELETED event.
    ensure_namespace(admin, "bench-gc").await?;
    let gapi: Api<ConfigMap> = Api::namespaced(admin.clone(), "bench-gc");
    let owner = gapi
        .create(&PostParams::default(), &configmap("owner".into()))
        .await?;
    let uid = owner.metadata.uid.clone().unwrap_or_default();
    let cs = client_pool(kubeconfig, clients).await?;
    create_many(cs, "bench-gc", objects, move |i| {
        let mut cm = configmap(format!("dep-{i:06}"));
        cm.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "owner".into(),
                uid: uid.clone(),
                ..Default::default()
            },
        ]);
        cm
    })
    .await?;
    let took = delete_and_count_deletions(&gapi, "owner", objects + 1).await?;
    println!("gc_cascade_10k_ms {:.0} ms", took.as_secs_f64() * 1000.0);

    // Namespace deletion: `objects` ConfigMaps in a namespace; time until the namespace is gone.
    ensure_namespace(admin, "bench-ns").await?;
    let cs = client_pool(kubeconfig, clients).await?;
    create_many(cs, "bench-ns", objects, |i| configmap(format!("cm-{i:06}"))).await?;
    let nss: Api<Namespace> = Api::all(admin.clone());
    let rv = nss
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut events = nss
        .watch(
            &WatchParams::default()
                .fields("metadata.name=bench-ns")
                .timeout(290),
            &rv,
        )
        .await?
        .boxed();
    let t = Instant::now();
    nss.delete("bench-ns", &DeleteParams::default()).await?;
    let gone = async {
        while let Some(ev) = events.try_next().await? {
            if let WatchEvent::Deleted(_) = ev {
                return anyhow::Ok(t.elapsed());
            }
        }
        anyhow::bail!("watch ended before the namespace was deleted")
    };
    let took = tokio::time::timeout(Duration::from_secs(280), gone).await??;
    println!("ns_delete_10k_ms {:.0} ms", took.as_secs_f64() * 1000.0);
    Ok(())
}

/// Deletes `name` (background propagation) and waits for `expected` DELETED events in its
/// namespace (the owner and its dependents); returns the time from the delete call.
async fn delete_and_count_deletions(
    api: &Api<ConfigMap>,
    name: &str,
    expected: usize,
) -> anyhow::Result<Duration> {
    let rv = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut events = api
        .watch(&WatchParams::default().timeout(290), &rv)
        .await?
        .boxed();
    let t = Instant::now();
    api.delete(name, &DeleteParams::background()).await?;
    let mut deleted = 0;
    let counted = async {
        while let Some(ev) = events.try_next().await? {
            if let WatchEvent::Deleted(_) = ev {
                deleted += 1;
                if deleted == expected {
                    return anyhow::Ok(t.elapsed());
                }
            }
        }
        anyhow::bail!("watch ended after {deleted} of {expected} deletions")
    };
    tokio::time::timeout(Duration::from_secs(280), counted).await?
}

/// The user the `rbac` phase creates as, bound by a RoleBinding in [`RBAC_NS`].
const BENCH_USER: &str = "bench-user";
const RBAC_NS: &str = "bench-user";
/// Roles and RoleBindings present besides the bench user's own.
const EXTRA_BINDINGS: usize = 1000;

fn role(ns: &str, name: &str, verbs: &[&str], resource: &str) -> Role {
    Role {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            api_groups: Some(vec!["".into()]),
            resources: Some(vec![resource.into()]),
            ..Default::default()
        }]),
    }
}

fn binding(ns: &str, name: &str, role: &str, user: &str) -> RoleBinding {
    RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            name: user.into(),
            ..Default::default()
        }]),
    }
}

/// The 1,000 unrelated Roles and RoleBindings, spread over ten namespaces (and the bench
/// user's own namespace, so its lookups see them too).
fn extra_policy() -> Vec<(Role, RoleBinding)> {
    (0..EXTRA_BINDINGS)
        .map(|i| {
            let ns = if i % 11 == 0 {
                RBAC_NS.to_owned()
            } else {
                format!("bench-rbac-{}", i % 10)
            };
            let name = format!("r-{i:04}");
            (
                role(&ns, &name, &["get", "list"], "secrets"),
                binding(&ns, &name, &name, &format!("user-{i:04}")),
            )
        })
        .collect()
}

/// Creates as a RoleBinding-bound user with 1,000 Roles/RoleBindings present, and times
/// one RBAC decision in-process over the same policy.
async fn rbac(
    admin: &Client,
    kubeconfig: &str,
    objects: usize,
    clients: usize,
) -> anyhow::Result<()> {
    ensure_namespace(admin, RBAC_NS).await?;
    for i in 0..10 {
        ensure_namespace(admin, &format!("bench-rbac-{i}")).await?;
    }
    let pp = PostParams::default();
    let extra = extra_policy();
    for (r, b) in &extra {
        let ns = r.metadata.namespace.as_deref().unwrap_or_default();
        Api::<Role>::namespaced(admin.clone(), ns)
            .create(&pp, r)
            .await?;
        Api::<RoleBinding>::namespaced(admin.clone(), ns)
            .create(&pp, b)
            .await?;
    }
    let own_role = role(RBAC_NS, "writer", &["create"], "configmaps");
    let own_binding = binding(RBAC_NS, "writer", "writer", BENCH_USER);
    Api::<Role>::namespaced(admin.clone(), RBAC_NS)
        .create(&pp, &own_role)
        .await?;
    Api::<RoleBinding>::namespaced(admin.clone(), RBAC_NS)
        .create(&pp, &own_binding)
        .await?;
    // The authorizer's caches follow within milliseconds; wait for the first allowed create.
    let probe: Api<ConfigMap> =
        Api::namespaced(client_as(kubeconfig, Some(BENCH_USER)).await?, RBAC_NS);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = probe.create(&pp, &configmap("probe".into())).await {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the bench user is still refused: {e}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut cs = Vec::with_capacity(clients);
    for _ in 0..clients {
        cs.push(client_as(kubeconfig, Some(BENCH_USER)).await?);
    }
    let (lat, elapsed) =
        create_many(cs, RBAC_NS, objects, |i| configmap(format!("cm-{i:06}"))).await?;
    println!(
        "api_create_user_per_s {:.0} creates/s",
        objects as f64 / elapsed
    );
    println!("api_create_user_p50_ms {:.2} ms", percentile(&lat, 0.50));
    println!("api_create_user_p99_ms {:.2} ms", percentile(&lat, 0.99));

    // One decision, in-process: the bootstrap policy plus the same 1,000 roles/bindings.
    use skiff::apiserver::{Authorizer, AuthzAttributes, Decision, UserInfo};
    use skiff::authz::{bootstrap_policy, index::Index, ClusterAuthorizer};
    use std::sync::Arc;
    let policy = bootstrap_policy::policy()?;
    let mut roles: Vec<Arc<Role>> = policy.roles.into_iter().map(Arc::new).collect();
    let mut bindings: Vec<Arc<RoleBinding>> =
        policy.role_bindings.into_iter().map(Arc::new).collect();
    for (r, b) in extra {
        roles.push(Arc::new(r));
        bindings.push(Arc::new(b));
    }
    roles.push(Arc::new(own_role));
    bindings.push(Arc::new(own_binding));
    let cluster_roles: Vec<_> = policy.cluster_roles.into_iter().map(Arc::new).collect();
    let cluster_bindings: Vec<_> = policy
        .cluster_role_bindings
        .into_iter()
        .map(Arc::new)
        .collect();
    let authorizer = ClusterAuthorizer::with_index(Index::build(
        &cluster_roles,
        &roles,
        &cluster_bindings,
        &bindings,
    ));
    let user = UserInfo::new(BENCH_USER, &["system:authenticated"]);
    let attrs = AuthzAttributes {
        verb: "create",
        group: "",
        resource: "configmaps",
        subresource: None,
        namespace: Some(RBAC_NS),
        name: None,
        field_selector: None,
    };
    let mut us = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let t = Instant::now();
        let d = authorizer.authorize(&user, &attrs);
        us.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            d == Decision::Allow,
            "the in-process decision refused the bench user"
        );
    }
    us.sort_by(|a, b| a.total_cmp(b));
    println!("rbac_authorize_us {:.2} us", percentile(&us, 0.99));
    Ok(())
}
