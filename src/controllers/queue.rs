//! The work queue every controller runs on (client-go's rate-limited workqueue, in small):
//! a key is queued at most once, is never processed by two workers at once, is processed
//! again if it changed while being processed, and failed keys come back after a growing
//! delay.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// First retry delay after a failed reconcile; doubled per failure up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_millis(5);
/// Longest retry delay after repeated failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Counters of one controller, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Keys waiting to be processed.
    pub queue_depth: AtomicUsize,
    pub reconciles: AtomicU64,
    pub reconcile_errors: AtomicU64,
}

impl Stats {
    pub fn queue_depth(&self) -> usize {
        self.queue_depth.load(Ordering::Relaxed)
    }
    pub fn reconciles(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }
    pub fn reconcile_errors(&self) -> u64 {
        self.reconcile_errors.load(Ordering::Relaxed)
    }
}

struct State<K> {
    queue: VecDeque<K>,
    /// Keys in `queue`.
    queued: HashSet<K>,
    /// Keys a worker holds; re-adding one of them marks it dirty.
    processing: HashSet<K>,
    dirty: HashSet<K>,
    /// Keys [`WorkQueue::add_batched`] will queue when their period ends.
    batching: HashSet<K>,
    failures: HashMap<K, u32>,
    shut_down: bool,
}

/// A de-duplicating queue of keys, cheap to clone and share between feeders and workers.
pub struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    ready: Arc<Notify>,
    stats: Arc<Stats>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            state: self.state.clone(),
            ready: self.ready.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    pub fn new() -> WorkQueue<K> {
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                batching: HashSet::new(),
                failures: HashMap::new(),
                shut_down: false,
            })),
            ready: Arc::new(Notify::new()),
            stats: Arc::new(Stats::default()),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Queues `key` unless it is already waiting.
    pub fn add(&self, key: K) {
        let mut s = self.state.lock();
        if s.shut_down || s.queued.contains(&key) {
            return;
        }
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        s.queued.insert(key.clone());
        s.queue.push_back(key);
        self.stats
            .queue_depth
            .store(s.queue.len(), Ordering::Relaxed);
        drop(s);
        self.ready.notify_one();
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// Queues `key` once `period` has passed, however often it is added meanwhile (the
    /// batch period of upstream's Job and EndpointSlice controllers): changes that only
    /// move an object's status counts cost one sync per period rather than one each. A key
    /// already waiting in the queue needs nothing more.
    pub fn add_batched(&self, key: K, period: Duration) {
        {
            let mut s = self.state.lock();
            if s.shut_down || s.queued.contains(&key) || !s.batching.insert(key.clone()) {
                return;
            }
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(period).await;
            q.state.lock().batching.remove(&key);
            q.add(key);
        });
    }

    /// Queues `key` after its backoff delay, which grows with each consecutive failure.
    pub fn add_rate_limited(&self, key: K) {
        let delay = {
            let mut s = self.state.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            let d = BASE_BACKOFF
                .saturating_mul(1u32.checked_shl(*n).unwrap_or(u32::MAX))
                .min(MAX_BACKOFF);
            *n = n.saturating_add(1);
            d
        };
        self.add_after(key, delay);
    }

    /// Forgets the failure count of `key` (it reconciled fine).
    pub fn forget(&self, key: &K) {
        self.state.lock().failures.remove(key);
    }

    /// Waits for the next key; `None` once shut down.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.state.lock();
                if s.shut_down {
                    return None;
                }
                if let Some(key) = s.queue.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    self.stats
                        .queue_depth
                        .store(s.queue.len(), Ordering::Relaxed);
                    if !s.queue.is_empty() {
                        // Wake another worker for the rest.
                        self.ready.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; if it was re-added meanwhile, it is queued again.
    pub fn done(&self, key: &K) {
        let again = {
            let mut s = self.state.lock();
            s.processing.remove(key);
            s.dirty.remove(key)
        };
        if again {
            self.add(key.clone());
        }
    }

    /// Wakes every waiting worker with `None`.
    pub fn shut_down(&self) {
        self.state.lock().shut_down = true;
        self.ready.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_queued_once_however_often_it_is_added() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.stats().queue_depth(), 2);
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, Some("b"));
    }

    #[tokio::test]
    async fn a_key_changed_while_processing_is_processed_again_afterwards() {
        let q = WorkQueue::new();
        q.add("a");
        let k = q.next().await.unwrap();
        q.add("a");
        assert_eq!(q.stats().queue_depth(), 0, "not handed to a second worker");
        q.done(&k);
        assert_eq!(q.next().await, Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_keys_come_back_after_a_growing_delay() {
        let q = WorkQueue::new();
        let start = tokio::time::Instant::now();
        for expected_ms in [5u64, 10, 20] {
            q.add_rate_limited("a");
            let k = q.next().await.unwrap();
            q.done(&k);
            assert_eq!(k, "a");
            let waited = start.elapsed();
            assert!(waited >= Duration::from_millis(expected_ms), "{waited:?}");
        }
        q.forget(&"a");
        q.add_rate_limited("a");
        let before = tokio::time::Instant::now();
        q.next().await.unwrap();
        assert_eq!(before.elapsed(), BASE_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn batched_adds_within_a_period_queue_the_key_once_when_it_ends() {
        let q = WorkQueue::new();
        let period = Duration::from_millis(100);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            q.add_batched("a", period);
        }
        assert_eq!(q.stats().queue_depth(), 0, "nothing before the period ends");
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(start.elapsed(), period);
        q.done(&"a");
        tokio::time::sleep(period * 2).await;
        assert_eq!(q.stats().queue_depth(), 0, "queued once for the five adds");

        // A key already queued needs no batch; a later one starts a new period.
        q.add("b");
        q.add_batched("b", period);
        assert_eq!(q.next().await, Some("b"));
        q.done(&"b");
        tokio::time::sleep(period * 2).await;
        assert_eq!(q.stats().queue_depth(), 0);
        q.add_batched("b", period);
        let before = tokio::time::Instant::now();
        assert_eq!(q.next().await, Some("b"));
        assert_eq!(before.elapsed(), period);
    }

    #[tokio::test]
    async fn shut_down_releases_waiting_workers() {
        let q: WorkQueue<&str> = WorkQueue::new();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
