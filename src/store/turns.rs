//! Turns at the writer lock, shared fairly among *flows* (the API server names one per
//! user, as upstream's API Priority and Fairness does with its `ByUser` flow distinguisher).
//!
//! A FIFO lock let one caller's burst (a controller creating 500 pods at once, the scheduler
//! binding a backlog) stand in front of everyone else: a `kubectl patch` waited for every
//! write queued before it (p99 0.5–1.4 s in `bench.sh scale`). Here waiting flows take
//! turns round-robin, so a write waits for at most one write of each other waiting flow.
//! Within a flow, writes keep their order.
//!
//! Invariant: at most one turn is held at a time; a released turn is handed straight to the
//! next waiter (never left free while someone waits), and a waiter dropped after it was
//! handed the turn passes it on.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::sync::oneshot;

tokio::task_local! {
    /// The flow the current task writes for (unset: the anonymous flow "").
    static FLOW: Arc<str>;
}

/// Runs `fut` with its store writes counted as `flow`'s.
pub async fn with_flow<F: Future>(flow: Arc<str>, fut: F) -> F::Output {
    FLOW.scope(flow, fut).await
}

fn current_flow() -> Arc<str> {
    FLOW.try_with(Arc::clone).unwrap_or_else(|_| Arc::from(""))
}

#[derive(Default)]
struct State {
    held: bool,
    /// Flows with waiters, in the order they get their next turn.
    ready: VecDeque<Arc<str>>,
    waiting: HashMap<Arc<str>, VecDeque<oneshot::Sender<()>>>,
}

#[derive(Default)]
pub(super) struct Turns {
    state: Mutex<State>,
}

/// A held turn; dropping it hands the turn on.
pub(super) struct Turn<'a> {
    turns: &'a Turns,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.release();
    }
}

impl Turns {
    /// Waits for the current flow's turn.
    pub async fn take(&self) -> Turn<'_> {
        let rx = {
            let mut s = self.state.lock();
            if !s.held {
                s.held = true;
                return Turn { turns: self };
            }
            let flow = current_flow();
            let (tx, rx) = oneshot::channel();
            let queue = s.waiting.entry(flow.clone()).or_default();
            queue.push_back(tx);
            if queue.len() == 1 {
                s.ready.push_back(flow);
            }
            rx
        };
        Waiter {
            turns: self,
            rx: Some(rx),
        }
        .await
    }

    /// Hands the turn to the next flow's first live waiter, or frees it.
    fn release(&self) {
        let mut s = self.state.lock();
        while let Some(flow) = s.ready.pop_front() {
            let Some(queue) = s.waiting.get_mut(&flow) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                s.waiting.remove(&flow);
            } else {
                s.ready.push_back(flow);
            }
            // A waiter that gave up has dropped its receiver: try the next one.
            if next.is_some_and(|tx| tx.send(()).is_ok()) {
                return;
            }
        }
        s.held = false;
    }
}

/// A queued `take`; see the module invariant for what dropping it does.
struct Waiter<'a> {
    turns: &'a Turns,
    rx: Option<oneshot::Receiver<()>>,
}

impl<'a> Future for Waiter<'a> {
    type Output = Turn<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Turn<'a>> {
        let rx = self.rx.as_mut().expect("polled after completion");
        match Pin::new(rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            // The sender is only dropped after a send, or with the whole lock.
            Poll::Ready(_) => {
                self.rx = None;
                Poll::Ready(Turn { turns: self.turns })
            }
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                // Handed the turn after all: pass it on.
                self.turns.release();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Starts a task that takes a turn as `flow`, records `label` and holds the turn until
    /// its gate opens.
    fn writer(
        turns: &Arc<Turns>,
        flow: &str,
        label: &'static str,
        log: &Arc<Mutex<Vec<&'static str>>>,
    ) -> tokio::task::JoinHandle<()> {
        let (turns, log, flow) = (turns.clone(), log.clone(), Arc::from(flow));
        tokio::spawn(with_flow(flow, async move {
            let _turn = turns.take().await;
            log.lock().push(label);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }))
    }

    #[tokio::test]
    async fn waiting_flows_take_turns_round_robin_each_in_its_own_order() {
        let turns = Arc::new(Turns::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let first = turns.take().await;
        let mut tasks = Vec::new();
        // A burst of one flow queued before a single write of another.
        for label in ["rs1", "rs2", "rs3", "rs4"] {
            tasks.push(writer(&turns, "rs", label, &log));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tasks.push(writer(&turns, "kubectl", "patch", &log));
        tokio::time::sleep(Duration::from_millis(2)).await;
        drop(first);
        for t in tasks {
            t.await.expect("writer");
        }
        assert_eq!(*log.lock(), ["rs1", "patch", "rs2", "rs3", "rs4"]);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_passes_its_turn_on() {
        let turns = Arc::new(Turns::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let first = turns.take().await;
        let quitter = {
            let turns = turns.clone();
            tokio::spawn(with_flow(Arc::from("q"), async move {
                let _turn = turns.take().await;
                unreachable!("cancelled before its turn");
            }))
        };
        tokio::time::sleep(Duration::from_millis(2)).await;
        let later = writer(&turns, "w", "w", &log);
        tokio::time::sleep(Duration::from_millis(2)).await;
        quitter.abort();
        let _ = quitter.await;
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), later)
            .await
            .expect("the turn went on past the cancelled waiter")
            .expect("writer");
        assert_eq!(*log.lock(), ["w"]);
        // And the lock is free again.
        drop(turns.take().await);
    }
}
