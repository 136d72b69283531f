//! Chunked lists (`limit` + `continue`) through the real binary: every page is read at the
//! first page's resourceVersion, and a token whose revision was compacted gets upstream's
//! 410 Expired with a token for the rest of the list.

mod common;

use std::time::Duration;

use common::process::eventually;
use common::TestServer;
use serde_json::Value;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str, value: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"v":"{value}"}}}}"#
    )
}

fn create(server: &TestServer, name: &str, value: &str) {
    let reply = server
        .request("POST", CONFIGMAPS)
        .content_type("application/json")
        .body(configmap(name, value))
        .send();
    assert_eq!(reply.status, 201, "creating {name}: {}", reply.text());
}

fn update(server: &TestServer, name: &str, value: &str) {
    let reply = server
        .request("PUT", &format!("{CONFIGMAPS}/{name}"))
        .content_type("application/json")
        .body(configmap(name, value))
        .send();
    assert_eq!(reply.status, 200, "updating {name}: {}", reply.text());
}

fn delete(server: &TestServer, name: &str) {
    let reply = server
        .request("DELETE", &format!("{CONFIGMAPS}/{name}"))
        .send();
    assert_eq!(reply.status, 200, "deleting {name}: {}", reply.text());
}

/// `GET` of a list page that must succeed.
#[track_caller]
fn page(server: &TestServer, query: &str) -> Value {
    let reply = server
        .request("GET", &format!("{CONFIGMAPS}?{query}"))
        .send();
    assert_eq!(reply.status, 200, "GET ?{query}: {}", reply.text());
    reply.json()
}

/// (name, data.v) of each item.
fn items(list: &Value) -> Vec<(String, String)> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        // The root-CA publisher's ConfigMap is in every namespace, as upstream's.
        .filter(|i| i["metadata"]["name"] != "kube-root-ca.crt")
        .map(|i| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (s(&i["metadata"]["name"]), s(&i["data"]["v"]))
        })
        .collect()
}

fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
    want.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn continue_of(list: &Value) -> String {
    list["metadata"]["continue"]
        .as_str()
        .unwrap_or_else(|| panic!("no continue token: {list}"))
        .to_string()
}

#[test]
fn continued_pages_show_the_first_pages_snapshot_despite_later_changes() {
    let server = TestServer::start();
    for name in ["c1", "c2", "c3", "c4", "c5"] {
        create(&server, name, "old");
    }
    let first = page(&server, "limit=2");
    assert_eq!(items(&first), pairs(&[("c1", "old"), ("c2", "old")]));
    let rv = first["metadata"]["resourceVersion"].clone();

    // Between the pages: a create before, between and after the remaining keys, an update
    // and a delete.
    create(&server, "c0", "new");
    create(&server, "c35", "new");
    create(&server, "c6", "new");
    update(&server, "c4", "new");
    delete(&server, "c3");

    let second = page(
        &server,
        &format!("limit=2&continue={}", continue_of(&first)),
    );
    assert_eq!(items(&second), pairs(&[("c3", "old"), ("c4", "old")]));
    assert_eq!(second["metadata"]["resourceVersion"], rv, "{second}");
    let third = page(
        &server,
        &format!("limit=2&continue={}", continue_of(&second)),
    );
    assert_eq!(items(&third), pairs(&[("c5", "old")]));
    assert_eq!(third["metadata"]["resourceVersion"], rv, "{third}");
    assert!(third["metadata"]["continue"].is_null(), "{third}");

    // The same snapshot by resourceVersionMatch=Exact, and the present by a new list.
    let rv = rv.as_str().expect("resourceVersion is a string");
    let exact = page(
        &server,
        &format!("resourceVersion={rv}&resourceVersionMatch=Exact"),
    );
    assert_eq!(exact["metadata"]["resourceVersion"], rv);
    assert_eq!(items(&exact).len(), 5);
    let names: Vec<_> = items(&page(&server, ""))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["c0", "c1", "c2", "c35", "c4", "c5", "c6"]);

    // kubectl pages the same way (it sends limit and follows continue itself).
    let out = server.kubectl_ok(&["get", "configmaps", "--chunk-size=2", "-o", "name"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("configmap/c")).count(),
        7
    );
}

#[test]
fn a_continue_token_older_than_compaction_gets_410_expired_with_a_token_for_the_rest() {
    let server = TestServer::start_with(&[
        "--store-compaction-interval",
        "1",
        "--store-compaction-keep",
        "5",
    ]);
    for name in ["c1", "c2", "c3", "c4", "c5"] {
        create(&server, name, "v0");
    }
    let first = page(&server, "limit=2");
    let token = continue_of(&first);
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string();
    for i in 1..=20 {
        update(&server, "c5", &format!("v{i}"));
    }

    let path = format!("{CONFIGMAPS}?limit=2&continue={token}");
    let reply = eventually(Duration::from_secs(15), "compaction past the token", || {
        let reply = server.request("GET", &path).send();
        match reply.status {
            410 => Ok(reply),
            other => Err(format!("{other}: {}", reply.text())),
        }
    });
    let status = reply.expect_status(410, "Expired");
    let message = status["message"].as_str().expect("message");
    assert!(
        message.starts_with(
            "The provided continue parameter is too old to display a consistent list result."
        ) && message.contains("use the continue token in this response"),
        "{message}"
    );
    let fresh = status["metadata"]["continue"]
        .as_str()
        .unwrap_or_else(|| panic!("no fresh token in the Status: {status}"));

    // The fresh token continues after the same key, at the current revision.
    let rest = page(&server, &format!("limit=2&continue={fresh}"));
    assert_eq!(items(&rest), pairs(&[("c3", "v0"), ("c4", "v0")]));
    let now_rv: u64 = rest["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("numeric resourceVersion");
    assert!(now_rv > rv.parse().expect("numeric"), "{rest}");
    let last = page(&server, &format!("limit=2&continue={}", continue_of(&rest)));
    assert_eq!(items(&last), pairs(&[("c5", "v20")]));

    // An Exact list at the compacted revision is Expired too, with the list wording.
    let reply = server
        .request(
            "GET",
            &format!("{CONFIGMAPS}?resourceVersion={rv}&resourceVersionMatch=Exact"),
        )
        .send();
    let status = reply.expect_status(410, "Expired");
    assert_eq!(
        status["message"],
        "The resourceVersion for the provided list is too old."
    );
}
