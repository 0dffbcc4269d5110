//! Waking whoever waits on an approval when it is decided in this process.
//!
//! A door that holds a caller's request open while an approver decides
//! (`[[routes]] hold`) waits on the approval's id. [`DecisionWatch`] is an
//! [`ApprovalEvents`] sink: put it in the gate's event sink, and every decision made through
//! this process (the admin API, the inbox) wakes the requests waiting on that approval at
//! once. Decisions made elsewhere (another replica, `portcullis approvals` on the store) are
//! not events here: a waiter also reads the store every few hundred milliseconds, and this
//! watch only makes the common case immediate.
//!
//! It knows no async runtime: [`Subscription::changed`] is a plain future woken through the
//! standard [`Waker`], so a held request costs a map entry and no thread.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

use super::event::{ApprovalEvent, ApprovalEvents, EventKind};

/// The approvals someone waits on, by id.
#[derive(Default)]
pub struct DecisionWatch {
    waiting: Mutex<HashMap<String, Vec<Weak<Signal>>>>,
}

impl std::fmt::Debug for DecisionWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionWatch").field("approvals", &self.lock().len()).finish()
    }
}

/// One waiter's flag and waker.
#[derive(Default)]
struct Signal {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        if let Some(waker) = self.waker.lock().unwrap_or_else(PoisonError::into_inner).take() {
            waker.wake();
        }
    }
}

impl DecisionWatch {
    /// An empty watch.
    pub fn new() -> DecisionWatch {
        DecisionWatch::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Weak<Signal>>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts waiting on `ids`: the subscription's [`changed`](Subscription::changed)
    /// completes after any of them is approved, rejected, redeemed or expires. Dropping the
    /// subscription stops waiting.
    pub fn subscribe(self: &Arc<Self>, ids: &[&str]) -> Subscription {
        let signal = Arc::new(Signal::default());
        let mut waiting = self.lock();
        for id in ids {
            waiting.entry((*id).to_owned()).or_default().push(Arc::downgrade(&signal));
        }
        Subscription { watch: self.clone(), ids: ids.iter().map(|id| (*id).to_owned()).collect(), signal }
    }

    /// How many approvals someone waits on now.
    pub fn waited_on(&self) -> usize {
        self.lock().len()
    }
}

impl ApprovalEvents for DecisionWatch {
    fn emit(&self, event: &ApprovalEvent) {
        if event.kind == EventKind::Pending {
            return;
        }
        let signals: Vec<Arc<Signal>> = self
            .lock()
            .get(&event.approval.id)
            .map(|s| s.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        for signal in signals {
            signal.fire();
        }
    }
}

/// Waiting on some approvals; see [`DecisionWatch::subscribe`].
pub struct Subscription {
    watch: Arc<DecisionWatch>,
    ids: Vec<String>,
    signal: Arc<Signal>,
}

impl Subscription {
    /// Completes once one of the approvals changed since the last time it completed (or
    /// since the subscription began).
    pub fn changed(&self) -> Changed<'_> {
        Changed { signal: &self.signal }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut waiting = self.watch.lock();
        for id in &self.ids {
            if let Some(signals) = waiting.get_mut(id) {
                signals.retain(|s| s.strong_count() > 0 && !std::ptr::eq(s.as_ptr(), Arc::as_ptr(&self.signal)));
                if signals.is_empty() {
                    waiting.remove(id);
                }
            }
        }
    }
}

/// The future of [`Subscription::changed`].
pub struct Changed<'a> {
    signal: &'a Signal,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.fired.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        *self.signal.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        // A decision between the check and storing the waker found no waker: look again.
        if self.signal.fired.swap(false, Ordering::AcqRel) { Poll::Ready(()) } else { Poll::Pending }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;
    use crate::approval::{Approval, ApprovalState, Decider};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn event(id: &str, state: ApprovalState) -> ApprovalEvent {
        let approval = Approval { id: id.into(), state, expires_ms: 60_000, ..Approval::default() };
        ApprovalEvent::decided(approval, Decider::named("fiona"), 1_000)
    }

    #[test]
    fn a_decision_wakes_the_waiters_of_that_approval_only() {
        let watch = Arc::new(DecisionWatch::new());
        let held = watch.subscribe(&["apr_1", "apr_2"]);
        let other = watch.subscribe(&["apr_3"]);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut changed = Box::pin(held.changed());
        assert!(changed.as_mut().poll(&mut cx).is_pending());
        // A new pending approval is no news for a waiter.
        watch.emit(&ApprovalEvent::pending(Approval { id: "apr_1".into(), ..Approval::default() }, "r", 0));
        watch.emit(&event("apr_3", ApprovalState::Rejected));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        watch.emit(&event("apr_2", ApprovalState::Approved));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(changed.as_mut().poll(&mut cx).is_ready());
        // Consumed: the next wait waits again.
        let mut again = Box::pin(held.changed());
        assert!(again.as_mut().poll(&mut cx).is_pending());
        let mut third = Box::pin(other.changed());
        assert!(third.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn dropping_a_subscription_forgets_it() {
        let watch = Arc::new(DecisionWatch::new());
        let a = watch.subscribe(&["apr_1"]);
        let b = watch.subscribe(&["apr_1", "apr_2"]);
        assert_eq!(watch.waited_on(), 2);
        drop(b);
        assert_eq!(watch.waited_on(), 1);
        watch.emit(&event("apr_1", ApprovalState::Approved));
        drop(a);
        assert_eq!(watch.waited_on(), 0);
    }
}
