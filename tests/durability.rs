//! Acknowledged writes survive SIGKILL: clients write as fast as they can, the server is
//! killed at a random moment, restarted, and every acknowledged write must be there.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::core::ObjectMeta;
use rand::Rng as _;

use common::TestServer;

const WRITERS: usize = 8;
const ROUNDS: usize = 4;
/// Writes acknowledged in a round before the kill may come.
const MIN_ACKED_PER_ROUND: u64 = 100;

/// What the clients know about one ConfigMap.
#[derive(Debug, Clone, Default)]
struct Record {
    /// resourceVersion of the last acknowledged write.
    acked: Option<u64>,
    /// A write was sent but not acknowledged (the server died under it): it may or may not
    /// have been applied.
    in_flight: bool,
}

type Ledger = Arc<Mutex<HashMap<String, Record>>>;

fn rv_number(rv: Option<&String>) -> u64 {
    let rv = rv.expect("a stored object has a resourceVersion");
    rv.parse()
        .unwrap_or_else(|_| panic!("resourceVersion {rv:?} is not the revision counter"))
}

fn configmap(name: &str, value: u64) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            ("value".to_string(), value.to_string()),
            // Some bulk, so writes are not trivially small.
            ("payload".to_string(), "x".repeat(512)),
        ])),
        ..ConfigMap::default()
    }
}

/// Creates ConfigMaps and updates its own previous one, recording each acknowledgement,
/// until a write fails (the server was killed). Returns the smallest revision it was given.
async fn writer(
    api: Api<ConfigMap>,
    ledger: Ledger,
    acked: Arc<AtomicU64>,
    round: usize,
    id: usize,
) -> Option<u64> {
    let mut lowest: Option<u64> = None;
    let mut previous: Option<(String, ConfigMap)> = None;
    for i in 0u64.. {
        // Every third write updates the previous object (compare-and-swap on its RV).
        let (name, result) = match previous.take() {
            Some((name, mut cm)) if i % 3 == 0 => {
                cm.data = Some(BTreeMap::from([("value".to_string(), i.to_string())]));
                ledger
                    .lock()
                    .expect("ledger")
                    .entry(name.clone())
                    .or_default()
                    .in_flight = true;
                let result = api.replace(&name, &PostParams::default(), &cm).await;
                (name, result)
            }
            _ => {
                let name = format!("r{round}-w{id}-{i}");
                ledger
                    .lock()
                    .expect("ledger")
                    .entry(name.clone())
                    .or_default()
                    .in_flight = true;
                let result = api
                    .create(&PostParams::default(), &configmap(&name, i))
                    .await;
                (name, result)
            }
        };
        match result {
            Ok(cm) => {
                let rv = rv_number(cm.metadata.resource_version.as_ref());
                let mut ledger = ledger.lock().expect("ledger");
                let record = ledger.entry(name.clone()).or_default();
                record.acked = Some(rv);
                record.in_flight = false;
                acked.fetch_add(1, Ordering::Relaxed);
                lowest = Some(lowest.map_or(rv, |l| l.min(rv)));
                previous = Some((name, cm));
            }
            Err(_) => return lowest,
        }
    }
    lowest
}

#[test]
fn acknowledged_writes_survive_repeated_sigkill() {
    let mut server = TestServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ledger: Ledger = Arc::default();
    let mut rng = rand::rng();
    // The list resourceVersion after each restart: it must never go backwards, and every
    // later write must get a higher revision.
    let mut floor: u64 = 0;
    let mut total_acked = 0;

    for round in 0..ROUNDS {
        let acked = Arc::new(AtomicU64::new(0));
        let lowest_rvs = runtime.block_on(async {
            let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
            let writers: Vec<_> = (0..WRITERS)
                .map(|id| {
                    tokio::spawn(writer(
                        api.clone(),
                        ledger.clone(),
                        acked.clone(),
                        round,
                        id,
                    ))
                })
                .collect();

            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while acked.load(Ordering::Relaxed) < MIN_ACKED_PER_ROUND {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "round {round}: only {} writes acknowledged in 20 s",
                    acked.load(Ordering::Relaxed)
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let jitter = rng.random_range(0..1000);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
            server.kill9();

            let mut lowest = Vec::new();
            for w in writers {
                let result = tokio::time::timeout(Duration::from_secs(30), w)
                    .await
                    .expect("writers stop once the server is gone")
                    .expect("a writer task panicked");
                lowest.extend(result);
            }
            lowest
        });
        let round_acked = acked.load(Ordering::Relaxed);
        total_acked += round_acked;
        if let Some(min) = lowest_rvs.iter().min() {
            assert!(
                *min > floor,
                "round {round}: a write got revision {min}, not above {floor} seen before the restart"
            );
        }

        server.restart();
        let (stored, list_rv) = runtime.block_on(async {
            let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
            let list = api
                .list(&ListParams::default())
                .await
                .expect("list after restart");
            let stored: HashMap<String, u64> = list
                .items
                .iter()
                .map(|cm| {
                    (
                        cm.metadata.name.clone().unwrap_or_default(),
                        rv_number(cm.metadata.resource_version.as_ref()),
                    )
                })
                .collect();
            (stored, rv_number(list.metadata.resource_version.as_ref()))
        });

        let mut ledger = ledger.lock().expect("ledger");
        let max_acked = ledger.values().filter_map(|r| r.acked).max().unwrap_or(0);
        assert!(
            list_rv >= max_acked && list_rv >= floor,
            "round {round}: revision went backwards: list RV {list_rv}, highest acknowledged {max_acked}, previous floor {floor}"
        );
        floor = list_rv;
        let mut lost = Vec::new();
        for (name, record) in ledger.iter_mut() {
            let now = stored.get(name).copied();
            match (record.acked, record.in_flight, now) {
                (Some(a), false, Some(s)) if s == a => {}
                (Some(a), true, Some(s)) if s >= a => {}
                (None, true, _) => {}
                _ => lost.push(format!("{name}: {record:?}, stored {now:?}")),
            }
            // What is stored now is the truth the next round builds on.
            record.acked = now;
            record.in_flight = false;
        }
        assert!(
            lost.is_empty(),
            "round {round}: {} acknowledged writes lost or changed after SIGKILL ({round_acked} acknowledged this round):\n{}",
            lost.len(),
            lost.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
        );
        eprintln!(
            "round {round}: {round_acked} writes acknowledged, {} objects stored, list RV {list_rv}",
            stored.len()
        );
        // kube-root-ca.crt is the root-CA publisher's, in every namespace.
        let unknown: Vec<&String> = stored
            .keys()
            .filter(|n| !ledger.contains_key(*n) && n.as_str() != "kube-root-ca.crt")
            .collect();
        assert!(unknown.is_empty(), "objects nobody wrote: {unknown:?}");
        ledger.retain(|_, r| r.acked.is_some());
    }
    assert!(total_acked >= MIN_ACKED_PER_ROUND * ROUNDS as u64);
}
