//! Renewal of the node's certificates while the agent runs: each certificate sleeps until
//! its jittered renewal time ([`certs::until_renewal`]), then a new one is requested with
//! the node's current identity (a client-certificate renewal is a `selfnodeclient` request,
//! auto-approved through `kubeadm:node-autoapprove-certificate-rotation`), stored, and put
//! in use: the node client is swapped, the serving watch gets the new pair.
//!
//! Invariant: the old certificate stays in use until the new one is stored; a failed
//! renewal is retried every [`RETRY`] while the old one is still valid.

use super::certs::{self, Wanted, CLIENT_CERT, SERVING_CERT};
use super::client::{self, NodeClient};
use super::identity::ServingCert;
use crate::pki::CertPair;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const RETRY: Duration = Duration::from_secs(30);

/// How a renewed certificate is obtained.
pub enum Source {
    /// Through a CSR with the node's client.
    Csr(kube::Client),
    /// Straight from the CA (the server's own node).
    Local(CertPair),
}

async fn obtain(source: &Source, wanted: &Wanted) -> Result<CertPair, certs::CertError> {
    match source {
        Source::Csr(c) => certs::request(c, wanted, Default::default()).await,
        Source::Local(ca) => certs::issue_locally(ca, wanted),
    }
}

async fn sleep_or_stop(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Renews the serving certificate until `shutdown`.
pub async fn serving(
    source: Source,
    wanted: Wanted,
    agent_dir: PathBuf,
    tx: watch::Sender<ServingCert>,
    shutdown: CancellationToken,
) {
    loop {
        let current = {
            let c = tx.borrow();
            CertPair {
                cert_pem: c.cert_pem.clone(),
                key_pem: c.key_pem.clone(),
            }
        };
        if !sleep_or_stop(certs::until_renewal(&current, SystemTime::now()), &shutdown).await {
            return;
        }
        match obtain(&source, &wanted).await {
            Ok(pair) => {
                if let Err(e) = certs::store(&agent_dir, SERVING_CERT, &pair) {
                    tracing::warn!(error = %e, "storing the renewed serving certificate failed");
                }
                tracing::info!(node = %wanted.node, "kubelet serving certificate renewed");
                tx.send_replace(ServingCert {
                    cert_pem: pair.cert_pem,
                    key_pem: pair.key_pem,
                });
            }
            Err(e) => {
                tracing::warn!(node = %wanted.node, error = %e, "renewing the serving certificate failed; retrying");
                if !sleep_or_stop(RETRY, &shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Renews the remote node's client certificate until `shutdown`.
pub async fn client_cert(
    node_client: NodeClient,
    url: String,
    ca_pem: String,
    mut current: CertPair,
    node: String,
    agent_dir: PathBuf,
    shutdown: CancellationToken,
) {
    loop {
        if !sleep_or_stop(certs::until_renewal(&current, SystemTime::now()), &shutdown).await {
            return;
        }
        let renewed = certs::request(
            &node_client.client(),
            &Wanted::client(&node),
            Default::default(),
        )
        .await
        .map_err(|e| e.to_string())
        .and_then(|pair| {
            certs::store(&agent_dir, CLIENT_CERT, &pair).map_err(|e| e.to_string())?;
            let c = client::cert_client(&url, &ca_pem, &pair).map_err(|e| e.to_string())?;
            Ok((pair, c))
        });
        match renewed {
            Ok((pair, c)) => {
                node_client.swap(c);
                current = pair;
                tracing::info!(node = %node, "node client certificate renewed");
            }
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "renewing the node client certificate failed; retrying");
                if !sleep_or_stop(RETRY, &shutdown).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_serving_certificate_near_its_end_is_replaced_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::pki::ServerPki::ensure(&dir.path().join("tls"), &[])
            .unwrap()
            .ca;
        let wanted = Wanted::serving("n1", vec!["n1".into()]);
        // A certificate that lives 2 s: due for renewal after 1.4–1.8 s.
        let (key, request) = wanted.generate().unwrap();
        let usages: Vec<String> = wanted.usages.iter().map(|u| u.to_string()).collect();
        let short = crate::pki::csr::sign(&ca, request.as_bytes(), &usages, Duration::from_secs(2))
            .unwrap();
        let (tx, mut rx) = watch::channel(ServingCert {
            cert_pem: short.clone(),
            key_pem: key.serialize_pem(),
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serving(
            Source::Local(ca.clone()),
            wanted,
            dir.path().to_owned(),
            tx,
            shutdown.clone(),
        ));
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("renewed in time")
            .unwrap();
        let renewed = rx.borrow().clone();
        assert_ne!(renewed.cert_pem, short);
        let (nb, na) = certs::validity(&renewed.cert_pem).unwrap();
        assert!(na.duration_since(nb).unwrap() > Duration::from_secs(300 * 86400));
        // Stored for the next start too.
        let stored = certs::load(dir.path(), SERVING_CERT).unwrap();
        assert_eq!(stored.cert_pem, renewed.cert_pem);
        assert!(certs::usable(&stored, &ca.cert_pem, SystemTime::now()));
        shutdown.cancel();
        task.await.unwrap();
    }
}
