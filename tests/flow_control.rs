//! Priority and fairness through the real binary: requests beyond the seats of their
//! priority level wait for one (and the request log says how long), while `system:masters`
//! is never held up.

mod common;

use common::http::Auth;
use common::TestServer;
use std::time::{Duration, Instant};

#[test]
fn requests_beyond_their_levels_seats_wait_for_one_and_admins_do_not() {
    // `0` gives every limited level its minimum of two seats.
    let server = TestServer::start_with(&[
        "--max-requests-inflight",
        "0",
        "--log",
        "info,skiff::apiserver=debug",
    ]);
    server.kubectl_ok(&["create", "serviceaccount", "flood"]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "flood",
        "--clusterrole=edit",
        "--serviceaccount=default:flood",
    ]);
    let token = server
        .kubectl_ok(&["create", "token", "flood"])
        .trim()
        .to_owned();
    let as_flood = |method: &str, path: &str| {
        server
            .request(method, path)
            .auth(Auth::Bearer(token.clone()))
    };
    // Two creates whose bodies trickle in (~8 KB at 1.5 KB/s: over 5 s) hold both seats of
    // global-default while the server reads them.
    let body = |name: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name}, "data": {"filler": "x".repeat(8000)}})
        .to_string()
    };
    let configmaps = "/api/v1/namespaces/default/configmaps";
    std::thread::scope(|s| {
        let slow: Vec<_> = ["slow-1", "slow-2"]
            .into_iter()
            .map(|name| {
                let req = as_flood("POST", configmaps)
                    .content_type("application/json")
                    .body(body(name))
                    .limit_rate(1500);
                s.spawn(move || req.send().status)
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        // An admin is exempt: answered while the seats are taken.
        let t = Instant::now();
        let admin = server.request("GET", configmaps).send();
        assert_eq!(admin.status, 200, "{}", admin.text());
        let admin_took = t.elapsed();
        // The same identity waits for a seat.
        let t = Instant::now();
        let waited = as_flood("GET", &format!("{configmaps}?limit=1")).send();
        assert_eq!(waited.status, 200, "{}", waited.text());
        let flood_took = t.elapsed();
        for h in slow {
            assert_eq!(h.join().expect("slow create"), 201);
        }
        assert!(
            flood_took > admin_took,
            "admin {admin_took:?}, flood {flood_took:?}"
        );
    });
    // The server's request log tells the wait apart from the rest.
    let log = server.log();
    let queued: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("method=GET") && l.contains("configmaps watch=false"))
        .filter_map(|l| l.split(" queued_ms=").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        queued.iter().any(|&ms| ms > 300.0) && queued.contains(&0.0),
        "queued_ms of the GETs: {queued:?}"
    );
}
