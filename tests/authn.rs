//! Authentication end to end through the real binary with kubectl and curl: service-account
//! tokens from `kubectl create token` used as bearer tokens, `kubectl auth whoami`, bound
//! tokens dying with their pod, TokenReview, bootstrap tokens and their expiry, OIDC
//! discovery verifying a token's signature, and the CSR flow from an openssl key to a
//! certificate that authenticates.

mod common;

use common::http::Auth;
use common::TestServer;
use serde_json::{json, Value};
use std::time::Duration;

/// A kubeconfig for `server` that authenticates with `user` (a YAML `user:` body).
fn kubeconfig(server: &TestServer, name: &str, user: &str) -> String {
    let content = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n{user}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        server.url(),
        server.ca_path().display()
    );
    server
        .write_file(name, &content)
        .to_string_lossy()
        .into_owned()
}

fn whoami(server: &TestServer, kubeconfig: &str) -> Value {
    let out = server.kubectl_ok(&["--kubeconfig", kubeconfig, "auth", "whoami", "-o", "json"]);
    common::json(&out)
}

#[test]
fn created_tokens_authenticate_and_bound_tokens_die_with_their_pod() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "team"]);
    // The service-account controller gives every namespace its `default` account.
    let start = std::time::Instant::now();
    while !server
        .kubectl(&["get", "serviceaccount", "default", "-n", "team"])
        .success()
    {
        assert!(start.elapsed().as_secs() < 30, "no default service account");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let token = server
        .kubectl_ok(&["create", "token", "default", "-n", "team"])
        .trim()
        .to_string();
    let kc = kubeconfig(&server, "sa.kubeconfig", &format!("    token: {token}"));
    let me = whoami(&server, &kc);
    assert_eq!(me["kind"], "SelfSubjectReview");
    let info = &me["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:team:default");
    assert_eq!(
        info["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated"
        ])
    );
    assert!(
        info["extra"]["authentication.kubernetes.io/credential-id"][0]
            .as_str()
            .unwrap()
            .starts_with("JTI=")
    );
    // The table kubectl prints.
    let table = server.kubectl_ok(&["--kubeconfig", &kc, "auth", "whoami"]);
    assert!(
        table.contains("Username") && table.contains("system:serviceaccount:team:default"),
        "{table}"
    );

    // A token bound to a pod stops working once the pod is gone.
    server.apply("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: team}\nspec:\n  serviceAccountName: default\n  containers: [{name: c, image: busybox}]\n");
    let bound = server
        .kubectl_ok(&[
            "create",
            "token",
            "default",
            "-n",
            "team",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "p",
            "--duration",
            "15m",
        ])
        .trim()
        .to_string();
    let reply = server
        .request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .auth(Auth::Bearer(bound.clone()))
        .content_type("application/json")
        .body(r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#)
        .send();
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(
        reply.json()["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["p"])
    );
    server.kubectl_ok(&[
        "delete",
        "pod",
        "p",
        "-n",
        "team",
        "--grace-period=0",
        "--force",
    ]);
    // Successful lookups are cached for up to 10 s.
    common::process::eventually(
        Duration::from_secs(20),
        "the bound token is refused",
        || {
            let r = server
                .request("GET", "/api/v1/namespaces/team/configmaps")
                .auth(Auth::Bearer(bound.clone()))
                .send();
            if r.status == 401 {
                Ok(())
            } else {
                Err(format!("status {}", r.status))
            }
        },
    );

    // TokenReview of a valid and an invalid token (as the admin).
    let review = |t: &str| {
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": t}});
        let r = server
            .request("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
            .content_type("application/json")
            .body(body.to_string())
            .send();
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    };
    let ok = review(&token);
    assert_eq!(ok["status"]["authenticated"], true);
    assert_eq!(
        ok["status"]["user"]["username"],
        "system:serviceaccount:team:default"
    );
    assert_eq!(
        ok["status"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let bad = review("not-a-token");
    assert!(bad["status"]["authenticated"].is_null() || bad["status"]["authenticated"] == false);
    assert!(bad["status"]["error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    // An invalid bearer token is 401, not anonymous.
    let r = server
        .request("GET", "/version")
        .auth(Auth::Bearer("nope".into()))
        .send();
    assert_eq!(r.status, 401);
}

#[test]
fn oidc_discovery_publishes_the_key_that_verifies_tokens() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "serviceaccount", "robot"]);
    let token = server.kubectl_ok(&["create", "token", "robot", "--audience", "vault"]);
    let token = token.trim();
    let conf = server
        .request("GET", "/.well-known/openid-configuration")
        .send()
        .json();
    assert_eq!(
        conf["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert!(conf["jwks_uri"]
        .as_str()
        .unwrap()
        .ends_with("/openid/v1/jwks"));
    let jwks = server.request("GET", "/openid/v1/jwks").send().json();
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kty"], "EC");
    // Verify the ES256 signature with openssl against the published x/y.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let x = b64.decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = b64.decode(jwk["y"].as_str().unwrap()).unwrap();
    let mut spki = hex_decode("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    spki.push(4);
    spki.extend(x);
    spki.extend(y);
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["kid"], jwk["kid"]);
    let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["aud"], json!(["vault"]));
    assert_eq!(claims["sub"], "system:serviceaccount:default:robot");
    let sig = b64.decode(parts[2]).unwrap();
    let der_sig = raw_to_der_signature(&sig);
    let dir = server.files_dir();
    std::fs::write(dir.join("pub.der"), &spki).unwrap();
    std::fs::write(dir.join("signed"), format!("{}.{}", parts[0], parts[1])).unwrap();
    std::fs::write(dir.join("sig.der"), der_sig).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-keyform", "DER", "-verify"])
        .arg(dir.join("pub.der"))
        .arg("-signature")
        .arg(dir.join("sig.der"))
        .arg(dir.join("signed"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
        "{out:?}"
    );
    // The vault token is not for the API server.
    let r = server
        .request("GET", "/api")
        .auth(Auth::Bearer(token.to_string()))
        .send();
    assert_eq!(r.status, 401);
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// JOSE's raw r||s signature as the DER ECDSA-Sig-Value openssl wants.
fn raw_to_der_signature(raw: &[u8]) -> Vec<u8> {
    let int = |b: &[u8]| {
        let mut v: Vec<u8> = b.iter().copied().skip_while(|&x| x == 0).collect();
        if v.first().is_none_or(|&x| x & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![2, v.len() as u8];
        out.extend(v);
        out
    };
    let (r, s) = (int(&raw[..32]), int(&raw[32..]));
    let mut out = vec![0x30, (r.len() + s.len()) as u8];
    out.extend(r);
    out.extend(s);
    out
}

#[test]
fn bootstrap_tokens_authenticate_until_they_expire() {
    let server = TestServer::start();
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(6))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    server.apply("bootstrap.yaml", &format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: bootstrap-token-abcdef, namespace: kube-system}}\ntype: bootstrap.kubernetes.io/token\nstringData:\n  token-id: abcdef\n  token-secret: 0123456789abcdef\n  usage-bootstrap-authentication: \"true\"\n  auth-extra-groups: system:bootstrappers:worker\n  expiration: \"{expires}\"\n"
    ));
    let kc = kubeconfig(
        &server,
        "bootstrap.kubeconfig",
        "    token: abcdef.0123456789abcdef",
    );
    let me = whoami(&server, &kc);
    assert_eq!(
        me["status"]["userInfo"]["username"],
        "system:bootstrap:abcdef"
    );
    assert_eq!(
        me["status"]["userInfo"]["groups"],
        json!([
            "system:bootstrappers",
            "system:bootstrappers:worker",
            "system:authenticated"
        ])
    );
    std::thread::sleep(Duration::from_secs(7));
    let run = server
        .kubectl(&["--kubeconfig", &kc, "auth", "whoami"])
        .fails();
    assert!(run.stderr.contains("Unauthorized"), "{run}");
}

#[test]
fn an_approved_csr_yields_a_certificate_that_authenticates() {
    let server = TestServer::start();
    let dir = server.files_dir();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "jane.key",
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        "jane.key",
        "-subj",
        "/O=devs/CN=jane",
        "-out",
        "jane.csr",
    ]);
    use base64::Engine;
    let csr = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(dir.join("jane.csr")).unwrap());
    let manifest = |name: &str, usages: &str| {
        format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  request: {csr}\n  signerName: kubernetes.io/kube-apiserver-client\n  expirationSeconds: 86400\n  usages: [{usages}]\n"
    )
    };
    server.apply("csr.yaml", &manifest("jane", "client auth"));
    server.kubectl_ok(&["certificate", "approve", "jane"]);
    let cert =
        common::process::eventually(Duration::from_secs(15), "the certificate is issued", || {
            let c =
                server.kubectl_ok(&["get", "csr", "jane", "-o", "jsonpath={.status.certificate}"]);
            if c.trim().is_empty() {
                Err("no certificate yet".into())
            } else {
                Ok(c)
            }
        });
    let pem = base64::engine::general_purpose::STANDARD
        .decode(cert.trim())
        .unwrap();
    std::fs::write(dir.join("jane.crt"), pem).unwrap();
    let kc = kubeconfig(
        &server,
        "jane.kubeconfig",
        &format!(
            "    client-certificate: {}\n    client-key: {}",
            dir.join("jane.crt").display(),
            dir.join("jane.key").display()
        ),
    );
    let me = whoami(&server, &kc);
    assert_eq!(me["status"]["userInfo"]["username"], "jane");
    assert_eq!(
        me["status"]["userInfo"]["groups"],
        json!(["devs", "system:authenticated"])
    );

    // Usages that do not fit the signer: Failed, with upstream's reason and message.
    server.apply("bad.yaml", &manifest("web", "server auth"));
    server.kubectl_ok(&["certificate", "approve", "web"]);
    let failed = common::process::eventually(Duration::from_secs(15), "the request fails", || {
        let v = server.kubectl_json(&["get", "csr", "web"]);
        let conds = v["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conds
            .into_iter()
            .find(|c| c["type"] == "Failed")
            .ok_or_else(|| "not failed yet".to_string())
    });
    assert_eq!(failed["reason"], "SignerValidationFailure");
    assert_eq!(
        failed["message"],
        "invalid usage for client certificate: server auth"
    );
}
