//! Leader election for `k8s-bridge controller` through a `coordination.k8s.io/v1` Lease, with
//! client-go's rules (what MetalLB's controller gets from controller-runtime):
//!
//! * A candidate takes the Lease only once the holder has not renewed it for `lease_duration`, timed
//!   by the candidate's own clock from when it last saw the record change (never by comparing the
//!   holder's timestamps with its own clock: clock skew between nodes does not matter).
//! * Every write is a compare-and-swap on the Lease's resourceVersion: of two candidates racing for an
//!   expired Lease, one wins and the other gets 409 Conflict.
//! * The leader renews every `retry_period`; if it cannot renew for `renew_deadline`, it stops leading
//!   (the process exits: nothing half-done survives). `renew_deadline` < `lease_duration`, so a leader
//!   that lost the Lease has stopped writing before anyone else may take it.
//! * On a clean stop the leader gives the Lease up (holder cleared), so the standby takes over at
//!   once instead of after `lease_duration`.
//!
//! The decision is pure ([`decide`]); [`run`] drives it against the API server.
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's (and controller-runtime's) defaults: 15 s, 10 s, 2 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The Lease is ours: renew it.
    Renew,
    /// Free, given up or expired: take it (compare-and-swap).
    Acquire,
    /// Someone else holds it and renewed it less than `lease_duration` ago (by our clock).
    Wait,
}

/// The decision, from the holder recorded in the Lease, when this candidate last saw the record
/// change (its own clock), and the lease duration. Pure.
pub fn decide(me: &str, holder: Option<&str>, unchanged_for: Duration, lease_duration: Duration) -> Step {
    match holder.filter(|h| !h.is_empty()) {
        Some(h) if h == me => Step::Renew,
        None => Step::Acquire,
        Some(_) if unchanged_for >= lease_duration => Step::Acquire,
        Some(_) => Step::Wait,
    }
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// The record a Lease holds, for change detection: holder, renew time, transitions.
type Record = (Option<String>, Option<String>, Option<i32>);

/// The record last seen, and when (our clock) it last changed.
type Seen = Option<(Record, Instant)>;

fn record(l: &Lease) -> Record {
    let s = l.spec.clone().unwrap_or_default();
    (s.holder_identity, s.renew_time.map(|t| t.0.to_string()), s.lease_transitions)
}

/// Campaigns for the Lease and keeps it. Sends `true` on `leading` once this replica leads. Returns
/// (an error) only when it stops leading: the caller must stop acting as leader at once.
pub async fn run(api: Api<Lease>, cfg: LeaseConfig, leading: watch::Sender<bool>) -> Result<(), crate::error::Error> {
    let mut seen: Seen = None;
    let mut last_renewed: Option<Instant> = None;
    let mut failing = false;
    loop {
        let attempt =
            tokio::time::timeout(cfg.retry_period.max(Duration::from_secs(1)), step(&api, &cfg, &mut seen)).await;
        let now = Instant::now();
        match attempt {
            Ok(Ok(true)) => {
                if last_renewed.is_none() {
                    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "leading");
                    let _ = leading.send(true);
                }
                last_renewed = Some(now);
                failing = false;
            }
            Ok(Ok(false)) => {
                if let Some(t) = last_renewed {
                    // Someone else holds it now.
                    let _ = leading.send(false);
                    return Err(crate::error::Error::LeaseLost { name: cfg.name.clone(), after: now - t });
                }
            }
            r => {
                let why = match r {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the API server did not answer in time".to_string(),
                };
                if !failing {
                    tracing::warn!(lease = %cfg.name, error = %why, "Lease not read or written; retrying");
                    failing = true;
                }
                if let Some(t) = last_renewed {
                    if now - t >= cfg.renew_deadline {
                        let _ = leading.send(false);
                        return Err(crate::error::Error::LeaseNotRenewed {
                            name: cfg.name.clone(),
                            after: now - t,
                            why,
                        });
                    }
                }
            }
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
}

/// One round: read the Lease, then create, renew or take it as [`decide`] says. Ok(true): we hold it.
async fn step(api: &Api<Lease>, cfg: &LeaseConfig, seen: &mut Seen) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let l = Lease {
            metadata: ObjectMeta { name: Some(cfg.name.clone()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &l).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let rec = record(&lease);
    let now = Instant::now();
    let changed_at = match seen {
        Some((r, t)) if *r == rec => *t,
        _ => now,
    };
    *seen = Some((rec.clone(), changed_at));
    let spec = lease.spec.get_or_insert_with(Default::default);
    let step = decide(&cfg.identity, spec.holder_identity.as_deref(), now - changed_at, cfg.lease_duration);
    match step {
        Step::Wait => return Ok(false),
        Step::Renew => {}
        Step::Acquire => {
            spec.holder_identity = Some(cfg.identity.clone());
            spec.acquire_time = Some(now_micro());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
    }
    spec.lease_duration_seconds = Some(cfg.lease_duration.as_secs() as i32);
    spec.renew_time = Some(now_micro());
    // replace carries the resourceVersion we read: 409 if anyone wrote in between.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(l) => {
            *seen = Some((record(&l), Instant::now()));
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up if this replica holds it (a clean stop), so a standby need not wait it out.
pub async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else { return };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now_micro());
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => tracing::info!(lease = %cfg.name, "Lease given up"),
        Err(e) => tracing::warn!(lease = %cfg.name, error = %e, "Lease not given up; the standby waits it out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_waits_out_the_holder_by_its_own_clock() {
        let d = Duration::from_secs(15);
        assert_eq!(decide("a", None, Duration::ZERO, d), Step::Acquire);
        assert_eq!(decide("a", Some(""), Duration::ZERO, d), Step::Acquire, "given up");
        assert_eq!(decide("a", Some("a"), Duration::from_secs(100), d), Step::Renew);
        assert_eq!(decide("a", Some("b"), Duration::from_secs(14), d), Step::Wait);
        assert_eq!(decide("a", Some("b"), d, d), Step::Acquire);
    }

    #[test]
    fn defaults_leave_the_old_leader_time_to_stop() {
        let c = LeaseConfig::new("ns", "l", "me");
        assert!(c.renew_deadline + c.retry_period < c.lease_duration, "{c:?}");
    }
}
