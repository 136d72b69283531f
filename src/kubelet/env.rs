//! A container's environment as upstream's kubelet builds it: `envFrom` first (with its
//! prefix), then `env` in order (values expanded with `$(VAR)` against what is defined so
//! far, or resolved from configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef); the
//! same `$(VAR)` expansion applies to command and args.
//!
//! Invariant: pure given its inputs: ConfigMaps and Secrets come through [`Objects`], so
//! the rules (optional flags, error texts) are unit-tested without an API server.

use super::downward;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    /// The API's answer, e.g. `configmaps "cfg" not found` (upstream shows the API error).
    #[error("{0}")]
    Get(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("{0}")]
    Field(String),
}

/// Where ConfigMaps and Secrets come from. `Ok(None)` = not found.
pub trait Objects: Send + Sync {
    fn config_map<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, EnvError>>;
    fn secret<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, EnvError>>;
}

impl Objects for kube::Client {
    fn config_map<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, EnvError>> {
        Box::pin(async move {
            kube::Api::<ConfigMap>::namespaced(self.clone(), ns)
                .get_opt(name)
                .await
                .map_err(|e| EnvError::Get(api_message(e)))
        })
    }
    fn secret<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, EnvError>> {
        Box::pin(async move {
            kube::Api::<Secret>::namespaced(self.clone(), ns)
                .get_opt(name)
                .await
                .map_err(|e| EnvError::Get(api_message(e)))
        })
    }
}

pub(super) fn api_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message,
        e => e.to_string(),
    }
}

fn not_found(resource: &str, name: &str) -> EnvError {
    EnvError::Get(format!("{resource} \"{name}\" not found"))
}

/// Memoizes lookups for one container build (upstream reads each object once).
struct Cache<'a> {
    objects: &'a dyn Objects,
    ns: &'a str,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Cache<'_> {
    async fn config_map(&mut self, name: &str) -> Result<Option<ConfigMap>, EnvError> {
        if !self.config_maps.contains_key(name) {
            let cm = self.objects.config_map(self.ns, name).await?;
            self.config_maps.insert(name.to_owned(), cm);
        }
        Ok(self.config_maps.get(name).cloned().flatten())
    }
    async fn secret(&mut self, name: &str) -> Result<Option<Secret>, EnvError> {
        if !self.secrets.contains_key(name) {
            let s = self.objects.secret(self.ns, name).await?;
            self.secrets.insert(name.to_owned(), s);
        }
        Ok(self.secrets.get(name).cloned().flatten())
    }
}

/// The container's environment, in upstream's order (envFrom keys sorted, then env in
/// declaration order; a later definition replaces an earlier one in place).
pub async fn build(
    pod: &Pod,
    container: &Container,
    objects: &dyn Objects,
    fields: &downward::Fields,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut cache = Cache {
        objects,
        ns,
        config_maps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| match env
        .iter_mut()
        .find(|(n, _)| *n == k)
    {
        Some(e) => e.1 = v,
        None => env.push((k, v)),
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let data: BTreeMap<String, String> = if let Some(r) = &from.config_map_ref {
            match cache.config_map(&r.name).await? {
                Some(cm) => cm.data.unwrap_or_default(),
                None if r.optional == Some(true) => continue,
                None => return Err(not_found("configmap", &r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            match cache.secret(&r.name).await? {
                Some(s) => s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect(),
                None if r.optional == Some(true) => continue,
                None => return Err(not_found("secret", &r.name)),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            // Names are free-form since relaxed env var names; `=` cannot be carried.
            let k = format!("{prefix}{k}");
            if !k.is_empty() && !k.contains('=') {
                set(&mut env, k, v);
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) if !v.is_empty() => {
                let defined: HashMap<&str, &str> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                expand(v, |n| defined.get(n).map(|v| v.to_string()))
            }
            (_, Some(from)) => {
                if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    let cm = match cache.config_map(&r.name).await? {
                        Some(cm) => cm,
                        None if optional => continue,
                        None => return Err(not_found("configmap", &r.name)),
                    };
                    match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::ConfigMapKey {
                                key: r.key.clone(),
                                namespace: ns.into(),
                                name: r.name.clone(),
                            })
                        }
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    let s = match cache.secret(&r.name).await? {
                        Some(s) => s,
                        None if optional => continue,
                        None => return Err(not_found("secret", &r.name)),
                    };
                    match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::SecretKey {
                                key: r.key.clone(),
                                namespace: ns.into(),
                                name: r.name.clone(),
                            })
                        }
                    }
                } else if let Some(f) = &from.field_ref {
                    downward::field(pod, &f.field_path, fields).map_err(EnvError::Field)?
                } else if let Some(r) = &from.resource_field_ref {
                    downward::resource(pod, container, r, fields).map_err(EnvError::Field)?
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        set(&mut env, e.name.clone(), value);
    }
    Ok(env)
}

/// Upstream's `$(VAR)` expansion: a defined reference is replaced, an undefined one is
/// left as written, `$$` is an escaped `$`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let b = input.as_bytes();
    let mut i = 0;
    let mut lit = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            out.push_str(&input[lit..i]);
            match b[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                }
                b'(' => match input[i + 2..].find(')') {
                    Some(end) => {
                        let name = &input[i + 2..i + 2 + end];
                        match lookup(name) {
                            Some(v) if !name.is_empty() => out.push_str(&v),
                            _ => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                    }
                    None => {
                        out.push_str(&input[i..]);
                        i = b.len();
                    }
                },
                _ => {
                    out.push('$');
                    i += 1;
                }
            }
            lit = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&input[lit.min(input.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
        ObjectFieldSelector, PodSpec, SecretKeySelector,
    };
    use k8s_openapi::ByteString;

    #[test]
    fn expansion_follows_upstream_rules() {
        let l = |n: &str| match n {
            "A" => Some("x".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(expand("$(A)-$(B)", l), "x-$(B)");
        assert_eq!(expand("$$(A)", l), "$(A)");
        assert_eq!(expand("a$$b", l), "a$b");
        assert_eq!(expand("$(EMPTY)|$(A", l), "|$(A");
        assert_eq!(expand("cost $5 $", l), "cost $5 $");
    }

    struct Objs(HashMap<String, ConfigMap>, HashMap<String, Secret>);
    impl Objects for Objs {
        fn config_map<'a>(
            &'a self,
            _: &'a str,
            n: &'a str,
        ) -> BoxFuture<'a, Result<Option<ConfigMap>, EnvError>> {
            Box::pin(async move { Ok(self.0.get(n).cloned()) })
        }
        fn secret<'a>(
            &'a self,
            _: &'a str,
            n: &'a str,
        ) -> BoxFuture<'a, Result<Option<Secret>, EnvError>> {
            Box::pin(async move { Ok(self.1.get(n).cloned()) })
        }
    }

    fn objs() -> Objs {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([
                ("mode".into(), "fast".into()),
                ("level".into(), "3".into()),
            ])),
            ..Default::default()
        };
        let s = Secret {
            data: Some(BTreeMap::from([(
                "password".into(),
                ByteString(b"hunter2".to_vec()),
            )])),
            ..Default::default()
        };
        Objs(
            HashMap::from([("cfg".into(), cm)]),
            HashMap::from([("sec".into(), s)]),
        )
    }

    fn pod(env: Vec<EnvVar>, env_from: Vec<EnvFromSource>) -> (Pod, Container) {
        let c = Container {
            name: "app".into(),
            env: Some(env),
            env_from: Some(env_from),
            ..Default::default()
        };
        let mut p = Pod {
            spec: Some(PodSpec {
                containers: vec![c.clone()],
                node_name: Some("n1".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        p.metadata.name = Some("web".into());
        p.metadata.namespace = Some("prod".into());
        (p, c)
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn from(src: EnvVarSource, name: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(src),
        }
    }

    #[tokio::test]
    async fn env_from_prefix_then_env_overrides_and_expands_in_order() {
        let (p, c) = pod(
            vec![
                var("GREETING", "hello $(CFG_mode) $(LATER)"),
                var("CFG_level", "9"),
                from(
                    EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "sec".into(),
                            key: "password".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                    "PW",
                ),
                from(
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.namespace".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    },
                    "NS",
                ),
                from(
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "spec.nodeName".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    },
                    "NODE",
                ),
                var("LATER", "x"),
            ],
            vec![EnvFromSource {
                prefix: Some("CFG_".into()),
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                secret_ref: None,
            }],
        );
        let env = build(&p, &c, &objs(), &downward::Fields::default())
            .await
            .unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("GREETING"), Some("hello fast $(LATER)"));
        assert_eq!(get("CFG_level"), Some("9"));
        assert_eq!(get("PW"), Some("hunter2"));
        assert_eq!(get("NS"), Some("prod"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(env[0].0, "CFG_level", "envFrom keys come first, sorted");
    }

    #[tokio::test]
    async fn missing_sources_fail_with_upstream_messages_unless_optional() {
        let key = |name: &str, key: &str, optional: Option<bool>| {
            from(
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: name.into(),
                        key: key.into(),
                        optional,
                    }),
                    ..Default::default()
                },
                "V",
            )
        };
        let (p, c) = pod(vec![key("cfg", "nope", None)], vec![]);
        let e = build(&p, &c, &objs(), &Default::default())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "couldn't find key nope in ConfigMap prod/cfg"
        );
        let (p, c) = pod(vec![key("gone", "k", None)], vec![]);
        let e = build(&p, &c, &objs(), &Default::default())
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "configmap \"gone\" not found");
        let (p, c) = pod(
            vec![key("gone", "k", Some(true)), key("cfg", "nope", Some(true))],
            vec![],
        );
        assert!(build(&p, &c, &objs(), &Default::default())
            .await
            .unwrap()
            .is_empty());
    }
}
