//! The rollout scheduler: a periodic task that reads rollout state from the database, decides,
//! and writes the decision back in one transaction. It keeps nothing in memory, so a restart
//! (even after kill -9) simply continues from what was committed.
//!
//! Per running rollout, in group order (hawkBit's threshold conditions):
//! - error: a running group whose `error / total > errorThreshold%` halts the rollout
//!   (rollout `halted`, group `error`); the operator decides (resume or cancel).
//! - success: when the most recently started group reaches `finished / total >= successThreshold%`,
//!   the next scheduled group starts (its actions are created).
//! - a running group with no open and no unstarted actions becomes `finished`; when no group is
//!   running or scheduled, the rollout is `finished`.
//!
//! Several replicas (docs/scale-out.md): each tick first takes or renews the database lease
//! [`LEASE`]; only its holder ticks. A replica that dies stops renewing, and another one takes the
//! lease over when it expires ([`lease_ttl_ms`]). The lease saves work; safety does not depend on
//! it: every transition is a conditional update (`WHERE status = 'scheduled'`, row locks on
//! PostgreSQL), so a stalled former holder that wakes up mid-tick cannot apply a step twice.

use crate::store::{GroupCounts, GroupStatus, Rollout, RolloutStatus, Store};
use crate::AppState;
use std::sync::Arc;
use std::time::Duration;

/// Name of the scheduler's lease row.
pub const LEASE: &str = "scheduler";

/// How long a scheduler lease lasts without renewal: ten ticks, at least 3 s.
pub fn lease_ttl_ms(interval_ms: u64) -> i64 {
    i64::try_from(interval_ms.saturating_mul(10))
        .unwrap_or(i64::MAX)
        .max(3000)
}

/// A holder name unique to this process: host, pid and a random part.
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let random = crate::auth::generate_token();
    format!(
        "{}:{}:{}",
        host.trim(),
        std::process::id(),
        random.get(..8).unwrap_or(&random)
    )
}

/// Runs the rollout scheduler until `stop` changes: a tick every `--scheduler-interval-ms` while
/// this process holds the [`LEASE`]; on the way out it gives the lease up.
pub async fn run(state: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let interval = state.config.scheduler_interval_ms.max(50);
    let period = Duration::from_millis(interval);
    let ttl = lease_ttl_ms(interval);
    let holder = holder_id();
    let mut leading = false;
    loop {
        match tick_if_leader(&state.store, &holder, ttl).await {
            Ok(now_leading) => {
                if now_leading != leading {
                    tracing::info!(
                        "rollout scheduler: {} the lease ({holder})",
                        if now_leading {
                            "holding"
                        } else {
                            "not holding"
                        }
                    );
                }
                leading = now_leading;
            }
            Err(err) => tracing::warn!("rollout scheduler: {err}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => break,
        }
    }
    if leading {
        // Another replica takes over at its next tick instead of waiting for expiry.
        if let Err(err) = state.store.release_lease(LEASE, &holder).await {
            tracing::warn!("rollout scheduler: releasing the lease: {err}");
        }
    }
}

/// Takes or renews the scheduler lease for `holder`; ticks if it holds it. Returns whether it did.
pub async fn tick_if_leader(store: &Store, holder: &str, ttl_ms: i64) -> Result<bool, sqlx::Error> {
    if !store.acquire_lease(LEASE, holder, ttl_ms).await? {
        return Ok(false);
    }
    tick(store).await?;
    Ok(true)
}

fn error_threshold_crossed(counts: &GroupCounts, threshold: i64) -> bool {
    counts.total > 0 && counts.error * 100 > threshold * counts.total
}

fn success_threshold_reached(counts: &GroupCounts, threshold: i64) -> bool {
    counts.total == 0 || counts.finished * 100 >= threshold * counts.total
}

/// One pass over all running rollouts.
pub async fn tick(store: &Store) -> Result<(), sqlx::Error> {
    for rollout in store.running_rollouts().await? {
        advance(store, &rollout).await?;
    }
    Ok(())
}

async fn advance(store: &Store, rollout: &Rollout) -> Result<(), sqlx::Error> {
    let groups = store.rollout_groups(rollout.id).await?;
    let mut last_started = None;
    for group in &groups {
        if matches!(group.status, GroupStatus::Scheduled | GroupStatus::Canceled) {
            continue;
        }
        last_started = Some(group);
        if group.status != GroupStatus::Running {
            continue;
        }
        let counts = store.group_counts(group.id).await?;
        if error_threshold_crossed(&counts, rollout.error_threshold) {
            let reason = format!(
                "group {:?}: {} of {} devices failed, above the error threshold of {}%",
                group.name, counts.error, counts.total, rollout.error_threshold
            );
            tracing::info!("rollout {} halted: {reason}", rollout.id);
            store.halt_rollout(rollout.id, group.id, &reason).await?;
            return Ok(());
        }
        if counts.running == 0 && counts.scheduled == 0 {
            store
                .set_group_status(group.id, GroupStatus::Running, GroupStatus::Finished)
                .await?;
        }
    }
    let next = groups.iter().find(|g| g.status == GroupStatus::Scheduled);
    match (last_started, next) {
        (None, Some(first)) => {
            store.start_group(rollout, first.id).await?;
        }
        (Some(current), Some(next)) => {
            // A group halted for errors and then resumed by the operator counts as done.
            let proceed = current.status == GroupStatus::Error
                || success_threshold_reached(
                    &store.group_counts(current.id).await?,
                    rollout.success_threshold,
                );
            if proceed {
                tracing::info!("rollout {}: starting group {:?}", rollout.id, next.name);
                store.start_group(rollout, next.id).await?;
            }
        }
        (_, None) => {
            let groups = store.rollout_groups(rollout.id).await?;
            if groups
                .iter()
                .all(|g| !matches!(g.status, GroupStatus::Running | GroupStatus::Scheduled))
            {
                store
                    .set_rollout_status(
                        rollout.id,
                        &[RolloutStatus::Running],
                        RolloutStatus::Finished,
                        None,
                    )
                    .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(total: i64, finished: i64, error: i64) -> GroupCounts {
        GroupCounts {
            total,
            finished,
            error,
            ..Default::default()
        }
    }

    #[test]
    fn thresholds_follow_hawkbit() {
        // error: strictly above the threshold
        assert!(!error_threshold_crossed(&counts(10, 0, 2), 20));
        assert!(error_threshold_crossed(&counts(10, 0, 3), 20));
        assert!(error_threshold_crossed(&counts(10, 0, 1), 0));
        assert!(!error_threshold_crossed(&counts(0, 0, 0), 0));
        // success: at or above the threshold
        assert!(success_threshold_reached(&counts(10, 8, 0), 80));
        assert!(!success_threshold_reached(&counts(10, 7, 0), 80));
        assert!(success_threshold_reached(&counts(0, 0, 0), 100));
    }
}
