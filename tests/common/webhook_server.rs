//! An HTTPS admission webhook server for tests, on 127.0.0.1 with a certificate from its own
//! CA (the CA goes into a configuration's `caBundle`). Shared by the end-to-end tests and the
//! in-crate webhook tests (included there by path), so it uses only the crate's own
//! dependencies and no skiff API.
//!
//! Paths (each answers an `admission.k8s.io/v1` AdmissionReview and records the request):
//! - `/allow`: allowed, nothing else.
//! - `/label`: allowed, with a JSONPatch adding the label `webhook.example.com/mutated=yes`.
//! - `/label-again`: allowed; once the object has that label, adds `webhook.example.com/seen=yes`
//!   (and counts how often it saw the label, for reinvocation).
//! - `/deny`: refused, code 403, message `configmaps are not welcome here`.
//! - `/warn`: allowed, with the warning `the webhook saw this`.
//! - `/sleep`: answers "allowed" after 3 seconds (longer than a 1 s `timeoutSeconds`).
//! - `/bad-uid`: allowed, but for another request uid.
//!
//! Invariant: the server runs on its own thread and runtime, and is stopped and joined when
//! the [`WebhookServer`] is dropped (also while a test panics).

#![allow(dead_code)]

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const LABEL: &str = "webhook.example.com/mutated";
pub const DENY_MESSAGE: &str = "configmaps are not welcome here";
pub const WARNING: &str = "the webhook saw this";
/// The Service (namespace, name) whose name the serving certificate also carries
/// (`webhook.hooks.svc`), for webhooks configured by `clientConfig.service` with an
/// Endpoints object pointing at this server.
pub const SERVICE: (&str, &str) = ("hooks", "webhook");

pub struct WebhookServer {
    addr: SocketAddr,
    ca_pem: String,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The CA and the serving certificate, for 127.0.0.1 and for [`SERVICE`]'s name.
fn certificates() -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own: two test servers' CAs must not be mistaken for each other.
    let serial: u64 = rand::random();
    ca.distinguished_name
        .push(DnType::CommonName, format!("webhook-test-ca-{serial:x}"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("serving key");
    let service_host = format!("{}.{}.svc", SERVICE.1, SERVICE.0);
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), service_host]).expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "webhook.test");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).expect("serving certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn answer(path: &str, review: &Value) -> Option<Value> {
    let req = &review["request"];
    let uid = req["uid"].clone();
    let mut response = json!({"uid": uid, "allowed": true});
    let has_labels = req["object"]["metadata"]["labels"].is_object();
    let labelled = req["object"]["metadata"]["labels"][LABEL] == "yes";
    match path {
        "/allow" | "/sleep" => {}
        "/label" => {
            let ops = if has_labels {
                json!([{"op": "add", "path": "/metadata/labels/webhook.example.com~1mutated", "value": "yes"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {LABEL: "yes"}}])
            };
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&ops).expect("patch")));
        }
        "/label-again" => {
            if labelled {
                let ops = json!([{"op": "add", "path": "/metadata/labels/webhook.example.com~1seen", "value": "yes"}]);
                response["patchType"] = json!("JSONPatch");
                response["patch"] = json!(base64::engine::general_purpose::STANDARD
                    .encode(serde_json::to_vec(&ops).expect("patch")));
            }
        }
        // Caps a Scale's replicas at 2 (registered for `deployments/scale`).
        "/cap-replicas" => {
            if req["object"]["spec"]["replicas"]
                .as_i64()
                .is_some_and(|r| r > 2)
            {
                let ops = json!([{"op": "replace", "path": "/spec/replicas", "value": 2}]);
                response["patchType"] = json!("JSONPatch");
                response["patch"] = json!(base64::engine::general_purpose::STANDARD
                    .encode(serde_json::to_vec(&ops).expect("patch")));
            }
        }
        "/deny" => {
            response["allowed"] = json!(false);
            response["status"] = json!({"code": 403, "message": DENY_MESSAGE});
        }
        "/warn" => response["warnings"] = json!([WARNING]),
        "/bad-uid" => response["uid"] = json!("not-the-request-uid"),
        _ => return None,
    }
    Some(
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
    )
}

impl WebhookServer {
    pub fn start() -> WebhookServer {
        let (ca_pem, cert_pem, key_pem) = certificates();
        let certs: Vec<_> = rustls_pki_types::pem::PemObject::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("serving certificate PEM");
        let key =
            <rustls_pki_types::PrivateKeyDer as rustls_pki_types::pem::PemObject>::from_pem_slice(
                key_pem.as_bytes(),
            )
            .expect("serving key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("TLS config");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("listener address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let recorded = requests.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("webhook server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stop_rx => return,
                        r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                    };
                    let acceptor = acceptor.clone();
                    let recorded = recorded.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                            let recorded = recorded.clone();
                            async move {
                                let path = req.uri().path().to_owned();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let review: Value =
                                    serde_json::from_slice(&body).unwrap_or(Value::Null);
                                recorded
                                    .lock()
                                    .expect("requests")
                                    .push((path.clone(), review.clone()));
                                if path == "/sleep" {
                                    tokio::time::sleep(Duration::from_secs(3)).await;
                                }
                                let resp = match answer(&path, &review) {
                                    Some(a) => http::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(
                                            serde_json::to_vec(&a).expect("answer"),
                                        ))),
                                    None => http::Response::builder()
                                        .status(404)
                                        .body(Full::new(Bytes::from_static(b"no such webhook"))),
                                };
                                Ok::<_, std::convert::Infallible>(resp.expect("response"))
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), svc)
                            .await;
                    });
                }
            });
            // In-flight handlers (a sleeping one) end with the runtime.
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        WebhookServer {
            addr,
            ca_pem,
            requests,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The CA as a configuration's `caBundle` (base64 of the PEM).
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    /// The AdmissionReviews received on `path`, in order.
    pub fn requests(&self, path: &str) -> Vec<Value> {
        self.requests
            .lock()
            .expect("requests")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
