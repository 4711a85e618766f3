//! Kubernetes Events off the data path. The reconcile loop only enqueues ([`EventQueue::publish`]
//! never waits on the API server); one task writes them with bounded concurrency and a rate limit.
//! Semantics after client-go's recorder where they matter:
//! - a bounded queue ([`QUEUE_CAP`]); when full the oldest pending Event is dropped (counted);
//! - coalescing: an Event equal (object, type, reason, note) to one still pending is merged into it;
//! - aggregation: an Event equal to one published in the last [`REPEAT_WINDOW`] is dropped (counted);
//!   kube's Recorder turns the repeats it does send into one Event with a `series` count;
//! - a spam filter per object: a token bucket of [`SPAM_BURST`] refilled one per [`SPAM_REFILL`]
//!   (client-go's EventSourceObjectSpamFilter defaults); drops are counted.
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event as KEvent, EventType, Recorder};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

pub const QUEUE_CAP: usize = 4096;
pub const REPEAT_WINDOW: Duration = Duration::from_secs(600);
pub const SPAM_BURST: f64 = 25.0;
pub const SPAM_REFILL: Duration = Duration::from_secs(300);
/// A write that takes longer is abandoned (and counted as failed); a hanging API server holds at
/// most `concurrency` writes.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Write limits of one writer task.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Writes in flight at once.
    pub concurrency: usize,
    /// Writes started per second (token bucket; burst of twice this).
    pub qps: f64,
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(burst: f64, per_sec: f64, now: Instant) -> Bucket {
        Bucket { tokens: burst, burst, per_sec, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_sec).min(self.burst);
        self.last = now;
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is there (zero if one is).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 || self.per_sec <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec)
        }
    }

    fn full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// A rate limiter for a writer task: waits for a token, then takes it.
pub struct Limiter(Bucket);

impl Limiter {
    pub fn new(qps: f64) -> Limiter {
        let qps = qps.max(0.1);
        Limiter(Bucket::new((2.0 * qps).max(1.0), qps, Instant::now()))
    }

    pub async fn acquire(&mut self) {
        loop {
            let w = self.0.wait(Instant::now());
            if w.is_zero() {
                break;
            }
            tokio::time::sleep(w).await;
        }
        self.0.try_take(Instant::now());
    }
}

/// (kind, namespace, name) of the object an Event is about.
/// An Event's identity (object, type, reason, note) and an object's, as 64-bit digests: the queue,
/// the repeat window and the spam buckets hold thousands of them, and only ever compare them. Two
/// identities sharing a digest would merge two Events, at odds of about 1 in 10^11 for the 4096 the
/// window holds.
type Key = u64;
type ObjKey = u64;

struct Pending {
    type_: EventType,
    reason: String,
    note: String,
    action: String,
    regarding: ObjectReference,
    since: Instant,
}

#[derive(Default)]
struct Inner {
    order: VecDeque<Key>,
    pending: HashMap<Key, Pending>,
    /// When each Event was last handed to the writer.
    recent: HashMap<Key, Instant>,
    spam: HashMap<ObjKey, Bucket>,
}

pub struct EventQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    metrics: Arc<Metrics>,
}

fn obj_key(r: &ObjectReference) -> ObjKey {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&r.kind, &r.namespace, &r.name).hash(&mut h);
    h.finish()
}

fn event_key(object: ObjKey, warning: bool, reason: &str, note: &str) -> Key {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (object, warning, reason, note).hash(&mut h);
    h.finish()
}

fn unix_ms(at: Instant) -> u64 {
    let ago = Instant::now().saturating_duration_since(at);
    SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl EventQueue {
    pub fn new(metrics: Arc<Metrics>) -> Arc<EventQueue> {
        Arc::new(EventQueue { inner: Mutex::new(Inner::default()), notify: Notify::new(), metrics })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gauges(&self, i: &Inner) {
        self.metrics.events_pending.store(i.order.len() as u64, Relaxed);
        let oldest = i.order.front().and_then(|k| i.pending.get(k)).map(|p| unix_ms(p.since)).unwrap_or(0);
        self.metrics.events_oldest_pending_unix_ms.store(oldest, Relaxed);
    }

    /// Queues an Event; never waits. See the module documentation for what is merged or dropped.
    pub fn publish(&self, type_: EventType, reason: &str, note: String, action: &str, regarding: &ObjectReference) {
        let now = Instant::now();
        let ok = obj_key(regarding);
        let key = event_key(ok, type_ == EventType::Warning, reason, &note);
        let mut i = self.lock();
        if i.pending.contains_key(&key) {
            self.metrics.events_aggregated.fetch_add(1, Relaxed);
            return;
        }
        if i.recent.get(&key).is_some_and(|t| now.saturating_duration_since(*t) < REPEAT_WINDOW) {
            self.metrics.events_aggregated.fetch_add(1, Relaxed);
            return;
        }
        if i.spam.len() > QUEUE_CAP {
            i.spam.retain(|_, b| !b.full(now));
        }
        let bucket = i.spam.entry(ok).or_insert_with(|| Bucket::new(SPAM_BURST, 1.0 / SPAM_REFILL.as_secs_f64(), now));
        if !bucket.try_take(now) {
            self.metrics.events_spam_dropped.fetch_add(1, Relaxed);
            return;
        }
        if i.order.len() >= QUEUE_CAP {
            if let Some(old) = i.order.pop_front() {
                i.pending.remove(&old);
                self.metrics.events_overflow_dropped.fetch_add(1, Relaxed);
            }
        }
        i.order.push_back(key);
        i.pending.insert(
            key,
            Pending {
                type_,
                reason: reason.to_string(),
                note,
                action: action.to_string(),
                regarding: regarding.clone(),
                since: now,
            },
        );
        self.gauges(&i);
        drop(i);
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<Pending> {
        let mut i = self.lock();
        let now = Instant::now();
        let key = i.order.pop_front()?;
        let p = i.pending.remove(&key);
        if i.recent.len() >= QUEUE_CAP {
            i.recent.retain(|_, t| now.saturating_duration_since(*t) < REPEAT_WINDOW);
            if i.recent.len() >= QUEUE_CAP {
                // Only repeats within the window are let through again; never unbounded.
                i.recent.clear();
            }
        }
        i.recent.insert(key, now);
        self.gauges(&i);
        p
    }

    /// The writer task: runs until the process ends.
    pub async fn run(self: Arc<Self>, recorder: Recorder, limits: Limits) {
        let sem = Arc::new(tokio::sync::Semaphore::new(limits.concurrency.max(1)));
        let mut limiter = Limiter::new(limits.qps);
        loop {
            let Some(p) = self.pop() else {
                self.notify.notified().await;
                continue;
            };
            limiter.acquire().await;
            let permit = sem.clone().acquire_owned().await.expect("never closed");
            let (recorder, metrics) = (recorder.clone(), self.metrics.clone());
            tokio::spawn(async move {
                let ev =
                    KEvent { type_: p.type_, reason: p.reason, note: Some(p.note), action: p.action, secondary: None };
                match tokio::time::timeout(WRITE_TIMEOUT, recorder.publish(&ev, &p.regarding)).await {
                    Ok(Ok(())) => {
                        metrics.events_written.fetch_add(1, Relaxed);
                    }
                    Ok(Err(e)) => {
                        metrics.events_failed.fetch_add(1, Relaxed);
                        tracing::debug!(error = %e, "event not published");
                    }
                    Err(_) => {
                        metrics.events_failed.fetch_add(1, Relaxed);
                        tracing::debug!("event not published: the API server did not answer in time");
                    }
                }
                drop(permit);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Service".into()),
            namespace: Some("default".into()),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn repeats_merge_spam_is_filtered_and_the_queue_is_bounded() {
        let m = Arc::new(Metrics::default());
        let q = EventQueue::new(m.clone());
        q.publish(EventType::Normal, "nodeAssigned", "a".into(), "Announce", &r("x"));
        q.publish(EventType::Normal, "nodeAssigned", "a".into(), "Announce", &r("x"));
        assert_eq!(m.events_pending.load(Relaxed), 1);
        assert_eq!(m.events_aggregated.load(Relaxed), 1);
        // Published, then repeated within the window: dropped.
        assert!(q.pop().is_some());
        q.publish(EventType::Normal, "nodeAssigned", "a".into(), "Announce", &r("x"));
        assert_eq!(m.events_pending.load(Relaxed), 0);
        assert_eq!(m.events_aggregated.load(Relaxed), 2);
        // Different notes on one object: 25 pass the spam filter (one token already used), the rest are dropped.
        for n in 0..40 {
            q.publish(EventType::Warning, "NotAnnounced", format!("n{n}"), "Announce", &r("x"));
        }
        assert_eq!(m.events_pending.load(Relaxed), 24);
        assert_eq!(m.events_spam_dropped.load(Relaxed), 16);
        // Many objects: the queue stays at its cap, the oldest go.
        for n in 0..(QUEUE_CAP + 10) {
            q.publish(EventType::Normal, "nodeAssigned", "a".into(), "Announce", &r(&format!("s{n}")));
        }
        assert_eq!(m.events_pending.load(Relaxed) as usize, QUEUE_CAP);
        assert_eq!(m.events_overflow_dropped.load(Relaxed), 34);
        assert_eq!(q.pop().unwrap().regarding.name.as_deref(), Some("s10"));
    }
}
