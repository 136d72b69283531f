//! `/etc/skiff/registries.yaml` in the k3s format: per-registry mirrors (endpoint lists and
//! repository rewrites) and per-host auth and TLS settings.
//!
//! Invariant: [`RegistriesConfig::endpoints`] always ends with the upstream registry itself,
//! so configured mirrors are tried first, in file order, and the origin is the last resort.
//!
//! Scheme: an endpoint written with `http://` or `https://` uses that scheme. Without one,
//! HTTPS is used, except for loopback hosts, which (like Docker's and containerd's default
//! for localhost) are spoken to in plain HTTP unless `configs.<host>.tls` exists: a TLS
//! section means the registry serves TLS (containerd tries HTTPS first in that case).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::reference::{Reference, DEFAULT_REGISTRY};
use super::ImageError;

/// The parsed registries file. A missing file means "no mirrors, no credentials".
#[derive(Debug, Clone, Default)]
pub struct RegistriesConfig {
    mirrors: BTreeMap<String, Mirror>,
    configs: BTreeMap<String, HostConfig>,
    /// Hosts whose `configs` entry has a `tls` section (even an empty one).
    tls_hosts: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
struct Mirror {
    endpoints: Vec<String>,
    rewrites: Vec<(regex::Regex, String)>,
}

/// Credentials and TLS settings for one registry host (`configs.<host>` in the file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub auth: Option<Credentials>,
    pub tls: TlsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// A token sent as `Authorization: Bearer` (the file's `identitytoken`).
    IdentityToken(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

/// One place an image can be fetched from, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` the HTTP requests go to.
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    /// Repository path on this endpoint (after mirror rewrites).
    pub repository: String,
    pub config: HostConfig,
    /// Whether this is the image's own registry rather than a mirror.
    pub upstream: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    mirrors: BTreeMap<String, FileMirror>,
    #[serde(default)]
    configs: BTreeMap<String, FileHostConfig>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileMirror {
    #[serde(default)]
    endpoint: Vec<String>,
    #[serde(default)]
    rewrite: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileHostConfig {
    #[serde(default)]
    auth: Option<FileAuth>,
    #[serde(default)]
    tls: Option<FileTls>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    username: Option<String>,
    password: Option<String>,
    auth: Option<String>,
    identitytoken: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileTls {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

impl RegistriesConfig {
    /// Reads the file; a missing file is an empty config, a malformed one an error.
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|e| match e {
                ImageError::RegistriesConfig { reason, .. } => ImageError::RegistriesConfig {
                    path: path.to_path_buf(),
                    reason,
                },
                other => other,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ImageError::io(path, e)),
        }
    }

    /// Parses the YAML text of a registries file.
    pub fn parse(text: &str) -> Result<Self, ImageError> {
        let err = |reason: String| ImageError::RegistriesConfig {
            path: PathBuf::from("registries.yaml"),
            reason,
        };
        let file: FileFormat = if text.trim().is_empty() {
            FileFormat::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| err(e.to_string()))?
        };
        let mut mirrors = BTreeMap::new();
        for (registry, m) in file.mirrors {
            let mut rewrites = Vec::new();
            for (pattern, replacement) in m.rewrite {
                let re = regex::Regex::new(&pattern)
                    .map_err(|e| err(format!("mirror {registry}: rewrite {pattern:?}: {e}")))?;
                rewrites.push((re, replacement));
            }
            for ep in &m.endpoint {
                split_endpoint(ep).map_err(|why| err(format!("mirror {registry}: {why}")))?;
            }
            mirrors.insert(
                normalize_host(&registry),
                Mirror {
                    endpoints: m.endpoint,
                    rewrites,
                },
            );
        }
        let mut configs = BTreeMap::new();
        let mut tls_hosts = BTreeSet::new();
        for (host, c) in file.configs {
            let auth = match c.auth {
                None => None,
                Some(a) => Some(credentials(&host, a).map_err(err)?),
            };
            let has_tls = c.tls.is_some();
            let tls = c
                .tls
                .map(|t| TlsConfig {
                    ca_file: t.ca_file,
                    cert_file: t.cert_file,
                    key_file: t.key_file,
                    insecure_skip_verify: t.insecure_skip_verify,
                })
                .unwrap_or_default();
            // Keys may be written as URLs (`https://reg:5000`); only the host matters.
            let key = split_endpoint(&host)
                .map(|(_, h)| h)
                .unwrap_or_else(|_| host.clone());
            let key = normalize_host(&key);
            if has_tls {
                tls_hosts.insert(key.clone());
            }
            configs.insert(key, HostConfig { auth, tls });
        }
        Ok(RegistriesConfig {
            mirrors,
            configs,
            tls_hosts,
        })
    }

    /// Settings for a host (`configs.<host>`), default when absent.
    pub fn host_config(&self, host: &str) -> HostConfig {
        self.configs
            .get(&normalize_host(host))
            .cloned()
            .unwrap_or_default()
    }

    /// Where to fetch `reference` from: its mirrors in file order (the `"*"` entry when the
    /// registry has none), then the registry itself.
    pub fn endpoints(&self, reference: &Reference) -> Vec<Endpoint> {
        let mirror = self
            .mirrors
            .get(&reference.registry)
            .or_else(|| self.mirrors.get("*"));
        let mut out = Vec::new();
        if let Some(m) = mirror {
            let repository = rewrite(&m.rewrites, &reference.repository);
            for ep in &m.endpoints {
                let Ok((scheme, host)) = split_endpoint(ep) else {
                    continue;
                };
                let host = normalize_host(&host);
                out.push(Endpoint {
                    plain_http: self.plain_http(scheme.as_deref(), &host),
                    config: self.host_config(&host),
                    host,
                    repository: repository.clone(),
                    upstream: false,
                });
            }
        }
        let upstream_host = if reference.registry == DEFAULT_REGISTRY {
            "registry-1.docker.io".to_string()
        } else {
            reference.registry.clone()
        };
        if !out.iter().any(|e| e.host == upstream_host) {
            out.push(Endpoint {
                // Keyed like its config: by the registry's name, not docker.io's API host.
                plain_http: self.plain_http(None, &normalize_host(&reference.registry)),
                config: self.host_config(&reference.registry),
                host: upstream_host,
                repository: reference.repository.clone(),
                upstream: true,
            });
        }
        out
    }
}

impl RegistriesConfig {
    /// Whether `host` is spoken to in plain HTTP; `scheme` is the one written in the
    /// endpoint, if any (see the module doc).
    fn plain_http(&self, scheme: Option<&str>, host: &str) -> bool {
        match scheme {
            Some("http") => true,
            Some(_) => false,
            None => is_loopback(host) && !self.tls_hosts.contains(host),
        }
    }
}

fn credentials(host: &str, a: FileAuth) -> Result<Credentials, String> {
    if let Some(token) = a.identitytoken.filter(|t| !t.is_empty()) {
        return Ok(Credentials::IdentityToken(token));
    }
    if let (Some(username), Some(password)) = (a.username.clone(), a.password.clone()) {
        return Ok(Credentials::Basic { username, password });
    }
    if let Some(encoded) = a.auth {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("configs.{host}.auth.auth is not base64: {e}"))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| format!("configs.{host}.auth.auth is not UTF-8"))?;
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| format!("configs.{host}.auth.auth must encode user:password"))?;
        return Ok(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    Err(format!(
        "configs.{host}.auth needs username and password, auth, or identitytoken"
    ))
}

fn rewrite(rules: &[(regex::Regex, String)], repository: &str) -> String {
    for (re, replacement) in rules {
        if re.is_match(repository) {
            return re.replace(repository, replacement.as_str()).into_owned();
        }
    }
    repository.to_string()
}

/// `http://host:port/path` → (Some("http"), "host:port"); `host:port` → (None, "host:port").
fn split_endpoint(ep: &str) -> Result<(Option<String>, String), String> {
    let (scheme, rest) = match ep.split_once("://") {
        Some((s, rest)) => {
            if s != "http" && s != "https" {
                return Err(format!("endpoint {ep:?}: scheme must be http or https"));
            }
            (Some(s.to_string()), rest)
        }
        None => (None, ep),
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("endpoint {ep:?} has no host"));
    }
    Ok((scheme, host.to_string()))
}

fn normalize_host(host: &str) -> String {
    if host == "index.docker.io" {
        DEFAULT_REGISTRY.to_string()
    } else {
        host.to_ascii_lowercase()
    }
}

/// Docker treats loopback registries as insecure by default; so do we (plain HTTP).
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::super::reference::normalize_reference;
    use super::*;

    const FILE: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com:8443/v2"
    rewrite:
      "^library/(.*)": "mirrored/$1"
  "*":
    endpoint: ["https://any.example.com"]
configs:
  "127.0.0.1:5000":
    auth:
      username: alice
      password: secret
  mirror.example.com:8443:
    auth:
      auth: Ym9iOnB3ZA==
    tls:
      ca_file: /etc/ssl/mirror.pem
      insecure_skip_verify: true
  quay.io:
    auth:
      identitytoken: tok
"#;

    #[test]
    fn registries_yaml_mirrors_are_tried_in_order_then_upstream() {
        let cfg = RegistriesConfig::parse(FILE).unwrap();
        let r = normalize_reference("busybox:1.36").unwrap();
        let eps = cfg.endpoints(&r);
        let hosts: Vec<_> = eps.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(
            hosts,
            [
                "127.0.0.1:5000",
                "mirror.example.com:8443",
                "registry-1.docker.io"
            ]
        );
        assert!(eps[0].plain_http);
        assert!(!eps[1].plain_http);
        assert_eq!(eps[0].repository, "mirrored/busybox");
        assert_eq!(eps[2].repository, "library/busybox", "no rewrite upstream");
        assert!(eps[2].upstream && !eps[0].upstream);
        assert_eq!(
            eps[0].config.auth,
            Some(Credentials::Basic {
                username: "alice".into(),
                password: "secret".into()
            })
        );
        assert_eq!(
            eps[1].config.auth,
            Some(Credentials::Basic {
                username: "bob".into(),
                password: "pwd".into()
            })
        );
        assert!(eps[1].config.tls.insecure_skip_verify);
        assert_eq!(
            eps[1].config.tls.ca_file.as_deref(),
            Some(Path::new("/etc/ssl/mirror.pem"))
        );
    }

    #[test]
    fn wildcard_mirror_applies_to_registries_without_their_own_entry() {
        let cfg = RegistriesConfig::parse(FILE).unwrap();
        let r = normalize_reference("quay.io/a/b:1").unwrap();
        let eps = cfg.endpoints(&r);
        let hosts: Vec<_> = eps.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["any.example.com", "quay.io"]);
        assert_eq!(
            eps[1].config.auth,
            Some(Credentials::IdentityToken("tok".into()))
        );
    }

    #[test]
    fn empty_or_missing_file_means_upstream_only() {
        let cfg = RegistriesConfig::load(Path::new("/nonexistent/registries.yaml")).unwrap();
        let r = normalize_reference("127.0.0.1:5000/x:1").unwrap();
        let eps = cfg.endpoints(&r);
        assert_eq!(eps.len(), 1);
        assert!(eps[0].plain_http, "loopback registries default to HTTP");
        assert!(RegistriesConfig::parse("").is_ok());
    }

    #[test]
    fn malformed_registries_yaml_is_rejected_with_a_reason() {
        for bad in [
            "mirrors: [1, 2]",
            "mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n",
            "configs:\n  r:\n    auth: {}\n",
            "mirrors:\n  d:\n    rewrite:\n      \"(\": x\n",
            "unknown: 1",
        ] {
            assert!(
                matches!(
                    RegistriesConfig::parse(bad),
                    Err(ImageError::RegistriesConfig { .. })
                ),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn loopback_registry_with_a_tls_section_is_reached_over_https() {
        let cfg = RegistriesConfig::parse(
            r#"
mirrors:
  docker.io:
    endpoint:
      - "localhost:5001"
      - "http://localhost:5001"
      - "127.0.0.1:5002"
configs:
  "127.0.0.1:5000":
    tls:
      ca_file: /tmp/ca.pem
  "https://localhost:5001":
    tls: {}
"#,
        )
        .unwrap();
        let eps = cfg.endpoints(&normalize_reference("127.0.0.1:5000/x:1").unwrap());
        assert_eq!(eps.len(), 1);
        assert!(
            !eps[0].plain_http,
            "a tls section means the registry serves TLS"
        );

        let eps = cfg.endpoints(&normalize_reference("busybox:1").unwrap());
        let schemes: Vec<_> = eps
            .iter()
            .map(|e| (e.host.as_str(), e.plain_http))
            .collect();
        assert_eq!(
            schemes,
            [
                ("localhost:5001", false),
                ("localhost:5001", true),
                ("127.0.0.1:5002", true),
                ("registry-1.docker.io", false),
            ],
            "an explicit scheme wins; loopback without a tls section stays plain HTTP"
        );
    }

    #[test]
    fn loopback_hosts_are_recognized() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("docker.io"));
    }
}
