//! Joining a remote server: fetch `<server>/cacerts` (not yet trusting anyone), refuse it
//! unless its SHA-256 is the hash in the token, then — unless a usable client certificate
//! is stored from an earlier join — authenticate with the token and obtain the node's
//! client certificate through a node-client CSR carrying the node password.
//!
//! Errors are one line a person can act on ([`JoinError`]); the server answers a bad token
//! with 401 and nothing is registered, because the first authenticated request is the CSR.
//!
//! Invariant: nothing is sent with the token before the CA has matched the token's hash
//! (a token without a hash trusts the CA on first use, with a warning, as k3s does, and
//! from then on the CA stored at that first join).

use super::certs::{self, CertError, Wanted, CLIENT_CERT};
use super::client::{self, ClientError};
use crate::pki::{self, CertPair, JoinToken};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The file holding this host's node password (k3s keeps it in /etc/rancher/node/password).
pub const PASSWORD_FILE: &str = "node-password";
/// The CA the agent pinned at its last join.
pub const CA_FILE: &str = "server-ca.crt";
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between tries to reach a server that is not up yet.
const MAX_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("invalid --token: {0}")]
    Token(String),
    #[error("cannot reach the server at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("the server at {url} is not the cluster the token is for: its CA has hash {got}, the token pins {want}")]
    CaMismatch {
        url: String,
        got: String,
        want: String,
    },
    #[error("joining as node {node:?}: {cause}")]
    Cert { node: String, cause: CertError },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{path}: {cause}")]
    Io {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
}

/// Downloads the server's CA bundle from `/cacerts`.
pub async fn fetch_ca(url: &str) -> Result<String, JoinError> {
    use http_body_util::BodyExt;
    let unreachable = |why: String| JoinError::Unreachable {
        url: url.to_owned(),
        why,
    };
    // Any certificate: the bytes fetched are checked against the token's hash before
    // anything is trusted.
    let tls = pki::insecure_client_config().map_err(|e| unreachable(e.to_string()))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<bytes::Bytes>>(connector);
    let uri: http::Uri = format!("{}/cacerts", url.trim_end_matches('/'))
        .parse()
        .map_err(|e: http::uri::InvalidUri| unreachable(e.to_string()))?;
    let fetch = async {
        let resp = client
            .get(uri)
            .await
            .map_err(|e| unreachable(format!("{e:?}").chars().take(200).collect()))?;
        if !resp.status().is_success() {
            return Err(unreachable(format!(
                "GET /cacerts answered {}",
                resp.status()
            )));
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| unreachable("/cacerts is not text".into()))
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| unreachable(format!("no answer within {FETCH_TIMEOUT:?}")))?
}

/// Checks the downloaded CA against the token's pin.
pub fn check_ca(url: &str, token: &JoinToken, ca_pem: &str) -> Result<(), JoinError> {
    let got = pki::ca_hash(ca_pem);
    match &token.ca_hash {
        Some(want) if *want != got => Err(JoinError::CaMismatch {
            url: url.to_owned(),
            got,
            want: want.clone(),
        }),
        Some(_) => Ok(()),
        None => {
            tracing::warn!(server = %url, ca_hash = %got, "the token pins no CA; trusting the server's CA on first use");
            Ok(())
        }
    }
}

/// The token with the CA it pins: its own hash, else the CA stored at an earlier join.
pub fn pin(token: &JoinToken, earlier_ca: Option<&str>) -> JoinToken {
    match (&token.ca_hash, earlier_ca) {
        (None, Some(ca)) => JoinToken {
            ca_hash: Some(pki::ca_hash(ca)),
            ..token.clone()
        },
        _ => token.clone(),
    }
}

/// This host's node password, created on first use (0600).
pub fn node_password(agent_dir: &Path) -> Result<String, JoinError> {
    let path = agent_dir.join(PASSWORD_FILE);
    if let Ok(p) = std::fs::read_to_string(&path) {
        let p = p.trim();
        if !p.is_empty() {
            return Ok(p.to_owned());
        }
    }
    let p = pki::random_secret();
    pki::write_file(&path, format!("{p}\n").as_bytes(), 0o600)?;
    Ok(p)
}

/// The outcome of a join: the pinned CA and the node's client certificate.
pub struct Joined {
    pub ca_pem: String,
    pub client_pair: CertPair,
}

/// Joins `url` as `node` with `token`, reusing stored credentials when they still hold.
pub async fn join(
    url: &str,
    token: &str,
    agent_dir: &Path,
    node: &str,
) -> Result<Joined, JoinError> {
    let token = pki::parse_join_token(token).map_err(|e| JoinError::Token(e.to_string()))?;
    // A server that is not up yet is waited for (as k3s's agent does); only an answer
    // that refuses the join ends it.
    let mut pause = Duration::from_millis(200);
    let ca_pem = loop {
        match fetch_ca(url).await {
            Ok(pem) => break pem,
            Err(e @ JoinError::Unreachable { .. }) => {
                tracing::warn!(error = %e, "waiting for the server");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY);
            }
            Err(e) => return Err(e),
        }
    };
    let earlier = std::fs::read_to_string(agent_dir.join(CA_FILE)).ok();
    check_ca(url, &pin(&token, earlier.as_deref()), &ca_pem)?;
    pki::write_file(&agent_dir.join(CA_FILE), ca_pem.as_bytes(), 0o644)?;
    if let Some(pair) = certs::load(agent_dir, CLIENT_CERT) {
        if certs::usable(&pair, &ca_pem, std::time::SystemTime::now())
            && cert_node(&pair) == Some(node.to_owned())
        {
            tracing::info!(node = %node, "using the stored node client certificate");
            return Ok(Joined {
                ca_pem,
                client_pair: pair,
            });
        }
    }
    let password = node_password(agent_dir)?;
    let bootstrap = client::bearer_client(url, &ca_pem, token.bearer())?;
    let annotations = BTreeMap::from([(
        crate::apiserver::admission::node_password::ANNOTATION.to_owned(),
        password,
    )]);
    let pair = certs::request(&bootstrap, &Wanted::client(node), annotations)
        .await
        .map_err(|cause| JoinError::Cert {
            node: node.to_owned(),
            cause,
        })?;
    certs::store(agent_dir, CLIENT_CERT, &pair).map_err(|cause| JoinError::Cert {
        node: node.to_owned(),
        cause,
    })?;
    tracing::info!(node = %node, "joined: node client certificate issued");
    Ok(Joined {
        ca_pem,
        client_pair: pair,
    })
}

/// The node name a client certificate is for.
fn cert_node(pair: &CertPair) -> Option<String> {
    let der = pki::certs_from_pem(&pair.cert_pem).ok()?;
    let (user, _) = pki::client_identity(der.first()?)?;
    user.strip_prefix("system:node:").map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_that_does_not_match_the_token_is_refused_in_one_line() {
        let token = JoinToken::generate("the real CA");
        assert!(check_ca("https://s:6443", &token, "the real CA").is_ok());
        let err = check_ca("https://s:6443", &token, "an impostor CA").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("the server at https://s:6443 is not the cluster the token is for")
        );
        assert!(!text.contains('\n'));
        let unpinned = pki::parse_join_token("abcdef.0123456789abcdef").unwrap();
        assert!(check_ca("https://s:6443", &unpinned, "anything").is_ok());
    }

    #[test]
    fn a_token_without_a_hash_is_held_to_the_ca_of_the_first_join() {
        let bare = pki::parse_join_token("abcdef.0123456789abcdef").unwrap();
        assert!(check_ca("u", &pin(&bare, None), "any CA").is_ok());
        assert!(check_ca("u", &pin(&bare, Some("first CA")), "first CA").is_ok());
        assert!(check_ca("u", &pin(&bare, Some("first CA")), "another CA").is_err());
        // A token's own hash wins over what was stored.
        let full = JoinToken::generate("new CA");
        assert!(check_ca("u", &pin(&full, Some("first CA")), "new CA").is_ok());
    }

    #[test]
    fn the_node_password_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = node_password(dir.path()).unwrap();
        let b = node_password(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
    }
}
