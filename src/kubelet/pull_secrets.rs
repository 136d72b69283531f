//! imagePullSecrets → registry credentials for one image (`kubernetes.io/dockerconfigjson`
//! and the older `kubernetes.io/dockercfg`), matched by registry host as upstream's
//! keyring does (docker.io also answers to `index.docker.io`/`https://index.docker.io/v1/`).
//!
//! Invariant: a secret that is missing or malformed is skipped (the pull then runs
//! anonymously or with registries.yaml credentials), never fatal.

use super::cri::Credentials;
use super::env::Objects;
use base64::Engine;
use k8s_openapi::api::core::v1::Pod;

fn host_of(image: &str) -> String {
    match crate::runtime::images::normalize_reference(image) {
        Ok(r) => r.registry,
        Err(_) => "docker.io".into(),
    }
}

fn matches(key: &str, host: &str) -> bool {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    let norm = |h: &str| match h {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    };
    norm(k) == norm(host)
}

/// Credentials for `image` from the auths JSON of a docker config.
pub fn from_config(json: &[u8], image: &str) -> Option<Credentials> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let auths = v.get("auths").unwrap_or(&v).as_object()?;
    let host = host_of(image);
    let (_, entry) = auths.iter().find(|(k, _)| matches(k, &host))?;
    let s = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(String::from);
    if let (Some(username), Some(password)) = (s("username"), s("password")) {
        return Some(Credentials::Basic { username, password });
    }
    if let Some(a) = s("auth") {
        let dec = base64::engine::general_purpose::STANDARD.decode(a).ok()?;
        let dec = String::from_utf8(dec).ok()?;
        let (username, password) = dec.split_once(':')?;
        return Some(Credentials::Basic {
            username: username.into(),
            password: password.into(),
        });
    }
    s("identitytoken").map(Credentials::IdentityToken)
}

pub async fn credentials(pod: &Pod, objects: &dyn Objects, image: &str) -> Option<Credentials> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    for r in pod.spec.as_ref()?.image_pull_secrets.iter().flatten() {
        let Ok(Some(s)) = objects.secret(ns, &r.name).await else {
            continue;
        };
        let data = s.data.unwrap_or_default();
        let raw = data
            .get(".dockerconfigjson")
            .or_else(|| data.get(".dockercfg"));
        if let Some(c) = raw.and_then(|b| from_config(&b.0, image)) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_auths_match_the_image_registry() {
        let json = br#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"},"https://index.docker.io/v1/":{"username":"d","password":"p"}}}"#;
        assert_eq!(
            from_config(json, "127.0.0.1:5000/busybox:1"),
            Some(Credentials::Basic {
                username: "user".into(),
                password: "pass".into()
            })
        );
        assert_eq!(
            from_config(json, "busybox"),
            Some(Credentials::Basic {
                username: "d".into(),
                password: "p".into()
            })
        );
        assert_eq!(from_config(json, "quay.io/x/y"), None);
    }
}
