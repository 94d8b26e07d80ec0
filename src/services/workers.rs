//! The background workers (outbox, dispatcher, imports, sequencer, webhooks, shares,
//! maintenance), supervised: a worker that panics or returns is logged with the reason,
//! counted, and started again after a pause that doubles up to a minute; while one is
//! down, `/readyz` answers 503 naming it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The first pause before a stopped worker is started again; it doubles each time, up to
/// [`MAX_RESTART_DELAY`].
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(500);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// What is known of one worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStatus {
    pub running: bool,
    /// How many times it stopped and was started again.
    pub restarts: u64,
    /// Why it last stopped.
    pub last_failure: Option<String>,
}

/// Starts workers and keeps them running. Cheap to clone.
#[derive(Clone, Default)]
pub struct Supervisor {
    workers: Arc<Mutex<BTreeMap<&'static str, WorkerStatus>>>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the future `start` makes, and makes and runs a new one whenever it ends.
    pub fn spawn<F, Fut>(&self, name: &'static str, start: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let workers = self.workers.clone();
        let set = move |change: &dyn Fn(&mut WorkerStatus)| {
            if let Ok(mut workers) = workers.lock() {
                change(workers.entry(name).or_default());
            }
        };
        set(&|status| status.running = true);
        tokio::spawn(async move {
            let mut delay = FIRST_RESTART_DELAY;
            loop {
                let why = match tokio::spawn(start()).await {
                    Ok(()) => "it returned".to_owned(),
                    Err(error) if error.is_panic() => format!("it panicked: {}", panic_message(error.into_panic())),
                    // The runtime is shutting down.
                    Err(_) => return,
                };
                tracing::error!(worker = name, reason = %why, restart_in_ms = delay.as_millis() as u64, "a worker stopped");
                set(&|status| {
                    status.running = false;
                    status.restarts += 1;
                    status.last_failure = Some(why.clone());
                });
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RESTART_DELAY);
                set(&|status| status.running = true);
            }
        });
    }

    /// Every worker started, by name.
    pub fn statuses(&self) -> BTreeMap<&'static str, WorkerStatus> {
        self.workers.lock().map(|workers| workers.clone()).unwrap_or_default()
    }

    /// The workers not running now, with why each stopped.
    pub fn down(&self) -> Vec<String> {
        self.statuses()
            .into_iter()
            .filter(|(_, status)| !status.running)
            .map(|(name, status)| format!("{name} ({})", status.last_failure.unwrap_or_default()))
            .collect()
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => {
            payload.downcast_ref::<&str>().map_or_else(|| "no message".to_owned(), |text| (*text).to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_worker_that_panics_is_reported_down_then_started_again() {
        let supervisor = Supervisor::new();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervisor.spawn("flaky", move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if run == 0 {
                    panic!("the first run fails");
                }
                std::future::pending::<()>().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(supervisor.down(), ["flaky (it panicked: the first run fails)"]);
        tokio::time::sleep(FIRST_RESTART_DELAY + Duration::from_millis(200)).await;
        assert!(supervisor.down().is_empty());
        let status = &supervisor.statuses()["flaky"];
        assert_eq!((status.running, status.restarts), (true, 1));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
