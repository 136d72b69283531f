//! kubectl 1.35 discovers the server: version, resource types, and custom resources with
//! their printer columns.

mod common;

use common::{json, manifests, row_where, table_rows, TestServer};

#[test]
fn kubectl_version_shows_the_server_version() {
    let server = TestServer::start();

    let out = server.kubectl_ok(&["version"]);
    assert!(out.contains("Client Version: v1.35."), "{out}");
    assert!(out.contains("Server Version: v1.35."), "{out}");

    let v = json(&server.kubectl_ok(&["version", "-o", "json"]));
    let sv = &v["serverVersion"];
    assert_eq!(sv["major"], "1", "{v}");
    assert_eq!(sv["minor"], "35", "{v}");
    let git = sv["gitVersion"].as_str().expect("gitVersion is a string");
    assert!(git.starts_with("v1.35."), "gitVersion {git}");
    for field in [
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    ] {
        assert!(sv[field].is_string(), "serverVersion.{field} missing: {v}");
    }
}

/// Parses `kubectl api-resources` rows into (name, short names, apiVersion, namespaced, kind);
/// the SHORTNAMES cell is empty for some rows, so columns are counted from the right.
fn api_resources(stdout: &str) -> Vec<(String, String, String, String, String)> {
    let rows = table_rows(stdout);
    assert_eq!(
        rows.first().map(|r| r.join(" ")),
        Some("NAME SHORTNAMES APIVERSION NAMESPACED KIND".to_string()),
        "api-resources header:\n{stdout}"
    );
    rows[1..]
        .iter()
        .map(|r| {
            assert!(r.len() == 4 || r.len() == 5, "odd api-resources row {r:?}");
            let n = r.len();
            let short = if n == 5 { r[1].clone() } else { String::new() };
            (
                r[0].clone(),
                short,
                r[n - 3].clone(),
                r[n - 2].clone(),
                r[n - 1].clone(),
            )
        })
        .collect()
}

/// Splits a tab-aligned kubectl table into cells by the header's column offsets (cells may
/// be empty, so whitespace splitting cannot be used).
fn aligned_cells(text: &str) -> Vec<Vec<String>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    let mut starts = Vec::new();
    let mut prev_space = true;
    for (i, c) in header.char_indices() {
        if c != ' ' && prev_space {
            starts.push(i);
        }
        prev_space = c == ' ';
    }
    std::iter::once(header)
        .chain(lines)
        .map(|line| {
            (0..starts.len())
                .map(|k| {
                    let from = starts[k].min(line.len());
                    let to = starts
                        .get(k + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    line[from..to].trim().to_string()
                })
                .collect()
        })
        .collect()
}

/// Compares kubectl's table with the expected one row by row and cell by cell; on mismatch
/// panics with every difference, named by resource and column.
fn assert_same_table(what: &str, expected: &str, got: &str) {
    let (want, have) = (aligned_cells(expected), aligned_cells(got));
    let mut diffs = Vec::new();
    if want.first() != have.first() {
        diffs.push(format!(
            "header: want {:?}, got {:?}",
            want.first(),
            have.first()
        ));
    }
    let key = |r: &Vec<String>| (r[0].clone(), r.get(2).cloned().unwrap_or_default());
    let header = want.first().cloned().unwrap_or_default();
    for w in want.iter().skip(1) {
        match have.iter().skip(1).find(|h| key(h) == key(w)) {
            None => diffs.push(format!("missing: {}", w.join(" | "))),
            Some(h) => {
                for (i, col) in header.iter().enumerate() {
                    if w.get(i) != h.get(i) {
                        diffs.push(format!(
                            "{} ({}): {col}: want {:?}, got {:?}",
                            w[0],
                            w.get(2).cloned().unwrap_or_default(),
                            w.get(i).cloned().unwrap_or_default(),
                            h.get(i).cloned().unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }
    for h in have.iter().skip(1) {
        if !want.iter().skip(1).any(|w| key(w) == key(h)) {
            diffs.push(format!("unexpected: {}", h.join(" | ")));
        }
    }
    let order_want: Vec<_> = want.iter().map(key).collect();
    let order_have: Vec<_> = have.iter().map(key).collect();
    if diffs.is_empty() && order_want != order_have {
        diffs.push("same rows in another order".to_string());
    }
    assert!(
        diffs.is_empty(),
        "kubectl {what} differs from a v1.35 kube-apiserver's:\n  {}\n--- got:\n{got}",
        diffs.join("\n  ")
    );
}

#[test]
fn api_resources_match_a_default_v1_35_kube_apiserver() {
    let server = TestServer::start();
    let plain = server.kubectl_ok(&["api-resources"]);
    assert_same_table(
        "api-resources",
        include_str!("fixtures/api-resources-v1.35.txt"),
        &plain,
    );
    let wide = server.kubectl_ok(&["api-resources", "-o", "wide"]);
    assert_same_table(
        "api-resources -o wide",
        include_str!("fixtures/api-resources-wide-v1.35.txt"),
        &wide,
    );
    // The parse is by column offsets: a row with empty cells still lines up.
    let rows = aligned_cells(include_str!("fixtures/api-resources-wide-v1.35.txt"));
    assert_eq!(
        rows[1],
        ["bindings", "", "v1", "true", "Binding", "create", ""]
    );
    // Subresources are not resource types.
    assert!(!plain.contains("deployments/scale"), "{plain}");
}

#[test]
fn custom_resource_definition_is_served_and_listed_in_discovery() {
    let server = TestServer::start();
    let out = server.apply("crd.yaml", manifests::WIDGET_CRD);
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"),
        "{out}"
    );

    let out = server.kubectl_ok(&["api-resources", "--api-group=example.com"]);
    let got = api_resources(&out);
    assert_eq!(
        got,
        vec![(
            "widgets".to_string(),
            "wd".to_string(),
            "example.com/v1".to_string(),
            "true".to_string(),
            "Widget".to_string()
        )],
        "{out}"
    );
}

#[test]
fn custom_resource_table_shows_additional_printer_columns() {
    let server = TestServer::start();
    server.apply("crd.yaml", manifests::WIDGET_CRD);
    server.kubectl_ok(&["create", "namespace", "shop"]);
    let widgets = format!(
        "{}---\n{}",
        manifests::widget("w1", "shop", 3, "blue"),
        manifests::widget("w2", "shop", 7, "red")
    );
    let out = server.apply("widgets.yaml", &widgets);
    assert!(out.contains("widget.example.com/w1 created"), "{out}");
    assert!(out.contains("widget.example.com/w2 created"), "{out}");

    let out = server.kubectl_ok(&["get", "widgets", "-n", "shop"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "SIZE", "COLOR", "AGE"], "{out}");
    assert_eq!(
        &row_where(&rows, 0, "w1")[..3],
        ["w1", "3", "blue"],
        "{out}"
    );
    assert_eq!(&row_where(&rows, 0, "w2")[..3], ["w2", "7", "red"], "{out}");

    // The short name works, and -o wide adds the priority-1 column.
    let out = server.kubectl_ok(&["get", "wd", "w1", "-n", "shop", "-o", "wide"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "SIZE", "COLOR", "SHAPE", "AGE"], "{out}");
    assert_eq!(&rows[1][..4], ["w1", "3", "blue", "round"], "{out}");

    let w = server.kubectl_json(&["get", "widget", "w2", "-n", "shop"]);
    assert_eq!(w["apiVersion"], "example.com/v1", "{w}");
    assert_eq!(w["kind"], "Widget", "{w}");
    assert_eq!(w["spec"]["size"], 7, "{w}");
    assert!(w["metadata"]["uid"].is_string(), "{w}");
    assert!(w["metadata"]["resourceVersion"].is_string(), "{w}");
}
