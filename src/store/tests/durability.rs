//! Restarts, SIGKILL, compaction persistence, and the benchmark.

use std::time::{Duration, Instant};

use super::*;

#[tokio::test]
async fn compaction_survives_reopen_and_writes_keep_the_log_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.compaction_keep_revisions = 100;
    let store = Store::open(cfg.clone()).expect("open");
    for i in 0..3500 {
        store
            .put(&format!("k{}", i % 50), b("v"))
            .await
            .expect("put");
    }
    // Each time the log passes keep + 1000 entries a write wakes the compactor (no timer is
    // involved here), which trims to the last 100 of what is durable when it runs: so at
    // least two compactions within 3500 writes, and the log never far above 1100 entries.
    // The compacted mark is raised before the entries go, so wait for both.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.compacted_revision() < 2000
        || log_len(&store) as u64 > 3501 - store.compacted_revision()
    {
        assert!(
            Instant::now() < deadline,
            "compactor fell behind: compacted {}, log {}",
            store.compacted_revision(),
            log_len(&store),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(log_len(&store) < 1600, "log of {} entries", log_len(&store));
    store.close().await.expect("close");
    // Read after close: a compaction still running when we looked has finished now.
    let compacted = store.compacted_revision();
    drop(store);

    let store = open_config(cfg);
    assert_eq!(store.compacted_revision(), compacted);
    assert!(log_len(&store) as u64 <= 3501 - compacted);
    assert!(store.watch("", compacted - 1).is_err());
}

#[tokio::test]
async fn acknowledged_writes_only_in_the_wal_are_replayed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.put("a", b("1")).await.expect("put");
    store.close().await.expect("close");
    drop(store);
    // As if the server had died after acknowledging revisions 3 and 4 but before sled got
    // them: they exist only in the WAL.
    let wal_dir = config(&dir).path.join("wal");
    let mut wal = super::super::wal::Wal::create(&wal_dir, 2).expect("wal");
    wal.append(&[
        super::super::wal::put_entry(3, "a", b"2"),
        super::super::wal::put_entry(4, "b", b"1"),
    ])
    .expect("append");
    drop(wal);

    let store = open(&dir);
    assert_eq!(store.revision(), 4);
    let a = store.get("a").await.expect("get").expect("a");
    assert_eq!((a.value, a.mod_revision), (b("2"), 3));
    let mut w = store.watch("", 2).expect("watch");
    assert_eq!(next_event(&mut w).await.revision, 3);
    assert_eq!(next_event(&mut w).await.revision, 4);
    assert_eq!(store.put("c", b("1")).await.expect("put"), 5);
}

#[tokio::test]
async fn wal_segments_go_once_sled_holds_their_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let value = Bytes::from(vec![b'x'; 256 << 10]);
    // ~10 MiB of writes: at least two closed 4 MiB segments.
    for i in 0..40 {
        store
            .put(&format!("k{i}"), value.clone())
            .await
            .expect("put");
    }
    let wal_dir = config(&dir).path.join("wal");
    let segments = || {
        std::fs::read_dir(&wal_dir)
            .expect("wal dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".wal"))
            })
            .count()
    };
    assert!(segments() >= 3, "segments rotate: {}", segments());
    // The applier checkpoints once the store is quiet and deletes the covered segments.
    let deadline = Instant::now() + Duration::from_secs(10);
    while segments() > 1 {
        assert!(
            Instant::now() < deadline,
            "{} WAL segments remain",
            segments()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.list("k").await.expect("list").0.len(), 40);
}

const CRASH_DIR_ENV: &str = "SKIFF_STORE_CRASH_DIR";

/// Child half of the crash test: four writers print each acknowledged write until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child by acknowledged_writes_survive_sigkill"]
async fn crash_child_writes_until_killed() {
    let Ok(path) = std::env::var(CRASH_DIR_ENV) else {
        panic!("{CRASH_DIR_ENV} not set: this test only runs as a child");
    };
    let store = Store::open(StoreConfig::new(path)).expect("open");
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            // Bounded so that an orphaned child cannot write forever.
            tokio::spawn(async move {
                for i in 0..100_000u64 {
                    let key = format!("k{t}-{i}");
                    let rev = store.put(&key, b("v")).await.expect("put");
                    println!("acked {key} {rev}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
}

/// Kills the child even when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "store::tests::durability::crash_child_writes_until_killed",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CRASH_DIR_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child"),
    );
    let stdout = child.0.stdout.take().expect("piped");
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        if let Some(rest) = line.strip_prefix("acked ") {
            let (key, rev) = rest.split_once(' ').expect("two fields");
            acked.push((key.to_owned(), rev.parse::<u64>().expect("revision")));
            if acked.len() == 1000 {
                break;
            }
        }
    }
    // SIGKILL while the writers are mid-flight.
    child.0.kill().expect("SIGKILL child");
    child.0.wait().expect("reap child");
    assert_eq!(acked.len(), 1000, "child stopped early");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = Store::open(StoreConfig::new(&path)).expect("reopen after kill");
        let revision = store.revision();
        let last = acked.iter().map(|a| a.1).max().expect("acked");
        assert!(revision >= last, "revision {revision} < acked {last}");
        for (key, rev) in &acked {
            let rec = store.get(key).await.expect("get");
            assert_eq!(rec.map(|r| r.mod_revision), Some(*rev), "{key}");
        }
        // The recovered history has no hole: every revision up to the current one is in the
        // log and the number of keys matches.
        let mut w = store.watch("", 1).expect("log survives");
        for want in 2..=revision {
            assert_eq!(next_event(&mut w).await.revision, want);
        }
        let (records, _) = store.list("").await.expect("list");
        assert_eq!(records.len() as u64, revision - 1);
    });
}

/// `cargo test bench_ -- --ignored --nocapture`: group-commit throughput and latency with 8
/// writers, and the time to list 10,000 records of ~300 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_eight_writers_and_list_of_ten_thousand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let value = Bytes::from(vec![b'x'; 300]);
    let per_task = 1250;
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (store, value) = (store.clone(), value.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let t0 = Instant::now();
                    store
                        .put(&format!("bench/{t}/{i:05}"), value.clone())
                        .await
                        .expect("put");
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed();
    lat.sort_unstable();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    eprintln!(
        "8 writers: {} writes in {elapsed:?} = {:.0}/s, p50 {:?} p99 {:?} max {:?}",
        lat.len(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(50),
        pct(99),
        lat[lat.len() - 1],
    );
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        let (records, _) = store.list("bench/").await.expect("list");
        best = best.min(t0.elapsed());
        assert_eq!(records.len(), 8 * per_task);
    }
    eprintln!("list of {} records: best {best:?}", 8 * per_task);
    let t0 = Instant::now();
    let (records, _) = store.list("bench/0/").await.expect("list");
    eprintln!("list of {} records: {:?}", records.len(), t0.elapsed());
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .expect("readable dir")
        .map(|e| {
            let e = e.expect("entry");
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                dir_size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// `cargo test bench_ -- --ignored --nocapture`: disk use after 100k updates of 1000 keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_disk_space_under_churn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let value = Bytes::from(vec![b'x'; 300]);
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (store, value) = (store.clone(), value.clone());
            tokio::spawn(async move {
                for i in 0..12_500 {
                    let key = format!("churn/{}", (i * 8 + t) % 1000);
                    store.put(&key, value.clone()).await.expect("put");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    store.flush().await.expect("flush");
    eprintln!(
        "100k updates of 1000 keys in {:?}: revision {}, compacted {}, log {} entries, disk {} KiB",
        started.elapsed(),
        store.revision(),
        store.compacted_revision(),
        log_len(&store),
        dir_size(dir.path()) / 1024
    );
}

/// With few writes, history still ends: each periodic run drops what the previous one saw
/// (kube-apiserver's compactor), so old revisions go within two intervals.
#[tokio::test]
async fn periodic_compaction_drops_what_the_previous_run_saw_even_under_the_keep_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.compaction_interval = Duration::from_millis(200);
    let store = Store::open(cfg).expect("open");
    let mut first = 0;
    for i in 0..20 {
        first = store.put(&format!("k{i}"), b("v")).await.expect("put");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.compacted_revision() < first {
        assert!(
            Instant::now() < deadline,
            "revision {first} still in history (compacted {})",
            store.compacted_revision()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        store.watch("", 1).is_err(),
        "a watch from revision 1 is compacted"
    );
    store.close().await.expect("close");
}
