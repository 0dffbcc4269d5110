//! [`Worker`]: one thread with a current-thread tokio runtime, where a backend's async
//! client lives, and a synchronous way to ask it for something within a budget.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;

use super::StateError;

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A backend's own thread. Work sent to it runs as a task there (so many requests share one
/// multiplexed connection or pool); the thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Worker {
    /// Starts the thread, named `name`.
    pub(crate) fn start(name: &str) -> std::io::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            runtime.block_on(async move {
                while let Some(job) = queue.recv().await {
                    tokio::spawn(job());
                }
            });
        })?;
        Ok(Worker { jobs })
    }

    /// Runs `work` on the thread and waits for its result at most `budget`. The work itself
    /// is given `work_limit` (at least the budget) before it is dropped, so work abandoned
    /// by a caller that stopped waiting does not pile up on a dead backend.
    ///
    /// Safe to call from anywhere: a plain thread, a blocking-pool thread or inside an async
    /// task (it then blocks that task's thread for at most `budget`).
    pub(crate) fn call<T: Send + 'static>(
        &self,
        budget: Duration,
        work_limit: Duration,
        work: impl Future<Output = Result<T, StateError>> + Send + 'static,
    ) -> Result<T, StateError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let limit = work_limit.max(budget);
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let result = match tokio::time::timeout(limit, work).await {
                    Ok(result) => result,
                    Err(_) => Err(StateError::Timeout(limit.as_millis() as u64)),
                };
                let _ = reply.send(result);
            })
        });
        self.jobs.send(job).map_err(|_| StateError::Stopped)?;
        match answer.recv_timeout(budget) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(StateError::Timeout(budget.as_millis() as u64)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(StateError::Stopped),
        }
    }
}
