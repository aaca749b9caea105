//! Device status reports, committed in groups: one transaction (one fsync) for many devices.

use super::{for_update, now_ms, Action, ActionStatus, NewStatus, Store, Transition, Tx};
use sqlx::AnyPool;

/// One queued device report (see `Store::report`).
pub(super) struct ReportJob {
    action_id: i64,
    target_id: i64,
    require_status: Option<ActionStatus>,
    entry: NewStatus,
    transition: Transition,
    reply: tokio::sync::oneshot::Sender<Result<bool, sqlx::Error>>,
}

/// Most reports committed by one transaction (one fsync).
pub(super) const REPORT_BATCH: usize = 256;

impl Store {
    /// Appends a status entry and applies `transition`, atomically, only if the action is still open
    /// (and, when `require_status` is given, still in that status). Returns false if it was not.
    ///
    /// Returns only after the change is committed (fsynced). Reports that arrive while a commit is
    /// under way are queued and committed together by the next transaction (group commit): one
    /// fsync for many devices instead of one each.
    pub async fn report(
        &self,
        action: &Action,
        require_status: Option<ActionStatus>,
        entry: &NewStatus,
        transition: Transition,
    ) -> Result<bool, sqlx::Error> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = ReportJob {
            action_id: action.id,
            target_id: action.target_id,
            require_status,
            entry: entry.clone(),
            transition,
            reply,
        };
        self.reports
            .send(job)
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    async fn report_in(tx: &mut Tx<'_>, job: &ReportJob) -> Result<bool, sqlx::Error> {
        let lock = for_update(tx);
        let current: Option<(i64, ActionStatus)> = sqlx::query_as(&format!(
            "SELECT active, status FROM actions WHERE id = $1{lock}"
        ))
        .bind(job.action_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((active, status)) = current else {
            return Ok(false);
        };
        if active == 0
            || job
                .require_status
                .is_some_and(|required| required != status)
        {
            return Ok(false);
        }
        Self::insert_status_in(tx, job.action_id, &job.entry).await?;
        let now = now_ms();
        match job.transition {
            Transition::None => {}
            Transition::Open(status) => {
                sqlx::query("UPDATE actions SET status = $1, updated_at = $2 WHERE id = $3 AND status <> 'canceling'")
                    .bind(status)
                    .bind(now)
                    .bind(job.action_id)
                    .execute(&mut **tx)
                    .await?;
            }
            Transition::Force(status) => {
                sqlx::query("UPDATE actions SET status = $1, updated_at = $2 WHERE id = $3")
                    .bind(status)
                    .bind(now)
                    .bind(job.action_id)
                    .execute(&mut **tx)
                    .await?;
            }
            Transition::Close { status, installed } => {
                sqlx::query(
                    "UPDATE actions SET status = $1, active = 0, updated_at = $2 WHERE id = $3",
                )
                .bind(status)
                .bind(now)
                .bind(job.action_id)
                .execute(&mut **tx)
                .await?;
                if installed {
                    // After a successful update hawkBit asks the device for its attributes again.
                    sqlx::query("UPDATE targets SET installed_action_id = $1, request_attributes = 1 WHERE id = $2")
                        .bind(job.action_id)
                        .bind(job.target_id)
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        Ok(true)
    }

    /// Adds an informational history entry (download started, deployment retrieved) to an open
    /// action (skipped if the action has been closed meanwhile).
    pub async fn note(
        &self,
        action_id: i64,
        status: ActionStatus,
        message: &str,
    ) -> Result<(), sqlx::Error> {
        // Through the group-commit queue of `report`: a rollout writes one note per deployment
        // fetch and per download, and one fsync each made these the bottleneck at 100 000 devices.
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = ReportJob {
            action_id,
            target_id: 0,
            require_status: None,
            entry: NewStatus::message(status, message),
            transition: Transition::None,
            reply,
        };
        self.reports
            .send(job)
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)??;
        Ok(())
    }

    /// Like `note`, but skipped if the action's latest entry already has this status (devices such
    /// as SWUpdate fetch the deployment on every poll).
    pub async fn note_once(
        &self,
        action_id: i64,
        status: ActionStatus,
        message: &str,
    ) -> Result<(), sqlx::Error> {
        let last: Option<ActionStatus> = sqlx::query_scalar(
            "SELECT status FROM action_status WHERE action_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(action_id)
        .fetch_optional(&self.read)
        .await?;
        if last == Some(status) {
            return Ok(());
        }
        self.note(action_id, status, message).await
    }
}

/// The group-commit loop behind `Store::report`: takes whatever reports are queued (up to
/// `REPORT_BATCH`), applies them in order in one transaction, commits once, then answers each.
/// If the batch fails, each report is retried in its own transaction so one bad report cannot
/// fail the others.
pub(super) async fn commit_reports(
    write: AnyPool,
    mut queue: tokio::sync::mpsc::Receiver<ReportJob>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < REPORT_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let together = async {
            let mut tx = write.begin().await?;
            let mut results = Vec::with_capacity(batch.len());
            for job in &batch {
                results.push(Store::report_in(&mut tx, job).await?);
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(results)
        }
        .await;
        match together {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(Ok(result));
                }
            }
            Err(_) => {
                for job in batch {
                    let alone = async {
                        let mut tx = write.begin().await?;
                        let result = Store::report_in(&mut tx, &job).await?;
                        tx.commit().await?;
                        Ok(result)
                    }
                    .await;
                    let _ = job.reply.send(alone);
                }
            }
        }
    }
}
