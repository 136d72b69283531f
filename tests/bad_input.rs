//! Bad requests get the upstream Status code and reason, and change nothing in the store.

mod common;

use common::http::Auth;
use common::TestServer;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// A server holding one ConfigMap `keep` (created through the same raw path the tests use).
fn server_with_a_configmap() -> TestServer {
    let server = TestServer::start();
    let reply = server
        .request("POST", CONFIGMAPS)
        .content_type("application/json")
        .body(
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"keep"},"data":{"a":"1"}}"#,
        )
        .send();
    assert_eq!(reply.status, 201, "creating keep: {}", reply.text());
    server
}

/// Every ConfigMap, Secret and Namespace as (kind, namespace, name, resourceVersion), but
/// the `kube-root-ca.crt` ConfigMaps the root-CA publisher writes on its own schedule.
fn snapshot(server: &TestServer) -> Vec<(String, String, String, String)> {
    let mut all = Vec::new();
    for (kind, path) in [
        ("ConfigMap", "/api/v1/configmaps"),
        ("Secret", "/api/v1/secrets"),
        ("Namespace", "/api/v1/namespaces"),
    ] {
        let reply = server.request("GET", path).send();
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
        let list = reply.json();
        for item in list["items"].as_array().expect("a list has items") {
            let meta = &item["metadata"];
            let field = |k: &str| meta[k].as_str().unwrap_or_default().to_string();
            if field("name") == "kube-root-ca.crt" {
                continue;
            }
            all.push((
                kind.to_string(),
                field("namespace"),
                field("name"),
                field("resourceVersion"),
            ));
        }
    }
    all.sort();
    all
}

/// Runs `bad` against a server with one ConfigMap and checks the store did not change.
fn unchanged_after(bad: impl FnOnce(&TestServer)) {
    let server = server_with_a_configmap();
    let before = snapshot(&server);
    bad(&server);
    assert_eq!(
        snapshot(&server),
        before,
        "a rejected request changed stored state"
    );
}

#[test]
fn malformed_json_bodies_get_400_bad_request() {
    unchanged_after(|server| {
        let truncated = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x""#;
        for (method, path, content_type, body) in [
            (
                "POST",
                CONFIGMAPS.to_string(),
                "application/json",
                truncated,
            ),
            (
                "POST",
                CONFIGMAPS.to_string(),
                "application/json",
                "[1,2,3]",
            ),
            (
                "PUT",
                format!("{CONFIGMAPS}/keep"),
                "application/json",
                truncated,
            ),
            (
                "PATCH",
                format!("{CONFIGMAPS}/keep"),
                "application/merge-patch+json",
                "{bad",
            ),
            (
                "PATCH",
                format!("{CONFIGMAPS}/keep"),
                "application/strategic-merge-patch+json",
                "{\"data\":",
            ),
            (
                "PATCH",
                format!("{CONFIGMAPS}/keep"),
                "application/json-patch+json",
                "not a patch",
            ),
        ] {
            let reply = server
                .request(method, &path)
                .content_type(content_type)
                .body(body)
                .send();
            let status = reply.expect_status(400, "BadRequest");
            assert!(
                !status["message"].as_str().unwrap_or_default().is_empty(),
                "{method} {path} ({content_type}): a Status says what is wrong: {status}"
            );
        }
    });
}

#[test]
fn malformed_yaml_bodies_get_400_bad_request() {
    unchanged_after(|server| {
        let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n data: : :\n";
        let reply = server
            .request("PATCH", &format!("{CONFIGMAPS}/keep?fieldManager=test"))
            .content_type("application/apply-patch+yaml")
            .body(broken)
            .send();
        reply.expect_status(400, "BadRequest");
        let reply = server
            .request("POST", CONFIGMAPS)
            .content_type("application/yaml")
            .body(broken)
            .send();
        reply.expect_status(400, "BadRequest");
    });
}

#[test]
fn malformed_protobuf_bodies_get_400_bad_request() {
    unchanged_after(|server| {
        let mut enveloped_garbage = b"k8s\x00".to_vec();
        enveloped_garbage.extend_from_slice(&[0x0a, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x03]);
        for body in [enveloped_garbage, b"not protobuf at all".to_vec()] {
            let reply = server
                .request("POST", CONFIGMAPS)
                .content_type("application/vnd.kubernetes.protobuf")
                .body(body)
                .send();
            reply.expect_status(400, "BadRequest");
        }
    });
}

#[test]
fn unknown_resources_get_404_with_the_upstream_message() {
    unchanged_after(|server| {
        for (method, path) in [
            ("GET", "/api/v1/namespaces/default/foos"),
            ("GET", "/api/v1/foos"),
            ("GET", "/apis/example.com/v1/namespaces/default/widgets"),
            ("GET", "/apis/apps/v1/namespaces/default/gizmos/x"),
            ("POST", "/api/v1/namespaces/default/foos"),
        ] {
            let mut request = server.request(method, path);
            if method == "POST" {
                request = request
                    .content_type("application/json")
                    .body(r#"{"apiVersion":"v1","kind":"Foo","metadata":{"name":"f"}}"#);
            }
            let status = request.send().expect_status(404, "NotFound");
            assert_eq!(
                status["message"], "the server could not find the requested resource",
                "{method} {path}: {status}"
            );
        }
    });
}

#[test]
fn wrong_content_type_gets_415_unsupported_media_type() {
    unchanged_after(|server| {
        let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"plain"}}"#;
        server
            .request("POST", CONFIGMAPS)
            .content_type("text/plain")
            .body(body)
            .send()
            .expect_status(415, "UnsupportedMediaType");
        // A PATCH must say which patch it is.
        server
            .request("PATCH", &format!("{CONFIGMAPS}/keep"))
            .content_type("application/json")
            .body(r#"{"data":{"a":"2"}}"#)
            .send()
            .expect_status(415, "UnsupportedMediaType");
    });
}

#[test]
fn invalid_names_get_422_invalid_with_field_causes() {
    unchanged_after(|server| {
        let long = "a".repeat(254);
        for (path, kind, name) in [
            (CONFIGMAPS, "ConfigMap", "Bad_Name"),
            (CONFIGMAPS, "ConfigMap", long.as_str()),
            ("/api/v1/namespaces", "Namespace", "has.dot"),
        ] {
            let body = serde_json::json!({
                "apiVersion": "v1", "kind": kind, "metadata": {"name": name}
            });
            let status = server
                .request("POST", path)
                .content_type("application/json")
                .body(body.to_string())
                .send()
                .expect_status(422, "Invalid");
            assert_eq!(status["details"]["kind"], kind, "{status}");
            assert_eq!(status["details"]["name"], name, "{status}");
            let causes = status["details"]["causes"]
                .as_array()
                .unwrap_or_else(|| panic!("an Invalid Status lists causes: {status}"));
            assert!(
                causes
                    .iter()
                    .any(|c| c["field"] == "metadata.name" && c["reason"] == "FieldValueInvalid"),
                "{status}"
            );
            let message = status["message"].as_str().unwrap_or_default();
            let prefix = format!(r#"{kind} "{name}" is invalid: metadata.name: Invalid value: "#);
            assert!(message.starts_with(&prefix), "{message}");
        }

        // No name at all.
        let status = server
            .request("POST", CONFIGMAPS)
            .content_type("application/json")
            .body(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#)
            .send()
            .expect_status(422, "Invalid");
        let causes = status["details"]["causes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            causes
                .iter()
                .any(|c| c["field"] == "metadata.name" && c["reason"] == "FieldValueRequired"),
            "{status}"
        );
    });
}

#[test]
fn namespace_in_body_different_from_url_gets_400() {
    unchanged_after(|server| {
        let status = server
            .request("POST", CONFIGMAPS)
            .content_type("application/json")
            .body(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"kube-system"}}"#)
            .send()
            .expect_status(400, "BadRequest");
        assert_eq!(
            status["message"],
            "the namespace of the provided object does not match the namespace sent on the request",
            "{status}"
        );
    });
}

#[test]
fn body_over_3_mib_gets_413_request_entity_too_large() {
    unchanged_after(|server| {
        let big = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "huge"},
            "data": {"blob": "x".repeat(4 * 1024 * 1024)}
        })
        .to_string();
        // Over HTTP/2 too: the Status must go out before the stream is reset.
        for http2 in [false, true] {
            let mut request = server
                .request("POST", CONFIGMAPS)
                .content_type("application/json")
                .body(big.clone());
            if http2 {
                request = request.http2();
            }
            let reply = request.send();
            let status = reply.expect_status(413, "RequestEntityTooLarge");
            assert_eq!(
                status["message"], "Request entity too large: limit is 3145728",
                "{status}"
            );
            let version = if http2 { "HTTP/2 413" } else { "HTTP/1.1 413" };
            assert!(reply.headers.contains(version), "{}", reply.headers);
        }

        server.write_file("huge.json", &big);
        let run = server.kubectl(&["create", "-f", "huge.json"]).fails();
        assert_eq!(
            run.stderr.trim(),
            r#"Error from server (RequestEntityTooLarge): error when creating "huge.json": Request entity too large: limit is 3145728"#,
            "{run}"
        );
    });
}

#[test]
fn requests_without_valid_credentials_get_401_unauthorized() {
    unchanged_after(|server| {
        let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"anon"}}"#;
        for auth in [Auth::Anonymous, Auth::Bearer("not-the-token".to_string())] {
            for (method, path) in [
                ("GET", "/api/v1/namespaces"),
                ("GET", "/api"),
                ("GET", "/apis/apps/v1/deployments"),
                ("POST", CONFIGMAPS),
                ("DELETE", "/api/v1/namespaces/default/configmaps/keep"),
            ] {
                let mut request = server.request(method, path).auth(auth.clone());
                if method == "POST" {
                    request = request.content_type("application/json").body(body);
                }
                let status = request.send().expect_status(401, "Unauthorized");
                assert_eq!(
                    status["message"], "Unauthorized",
                    "{method} {path} {auth:?}"
                );
            }
        }
    });
}
