//! The audit log (migrations/0800_audit_log.sql, crate::audit).

use super::{Page, Store};
use serde::Serialize;

/// One audit record.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct AuditRecord {
    /// Row id; later records have higher ids.
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// The tenant acted on; `None` when none could be resolved (e.g. an unknown token).
    #[serde(rename = "tenantId")]
    pub tenant_id: Option<i64>,
    /// Who acted: a token's name, `user "alice"`, `(no valid token)` or `(device)`; never a secret.
    pub actor: String,
    /// What was done: method and route (`POST /rest/v1/targets`), `login`, `token rejected: …`, ….
    pub action: String,
    /// What it was done to: the request path, or what a dashboard action touched.
    pub object: String,
    /// The HTTP status the request was answered with.
    pub status: i64,
    /// The client's IP address: the TCP peer (behind a reverse proxy, the proxy's address).
    pub address: Option<String>,
    /// More about the event, e.g. why a login failed.
    pub detail: Option<String>,
}

/// What `GET /rest/v1/audit` filters on; `None` fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// `Some(id)`: that tenant's records; `None`: every record (cross-tenant callers only).
    pub tenant_id: Option<i64>,
    /// Only records of this actor (exact match).
    pub actor: Option<String>,
    /// A prefix of the action, e.g. `login` or `POST /rest/v1/targets`.
    pub action: Option<String>,
    /// Only records at or after this time (ms since 1970).
    pub since: Option<i64>,
    /// Only records before this time (ms since 1970).
    pub until: Option<i64>,
    /// Only records with an HTTP status of 400 or above (refusals and failures).
    pub failed_only: bool,
}

impl AuditFilter {
    /// The WHERE clause and its text bindings, numbered from `$1`.
    fn clause(&self) -> (String, Vec<AuditBind>) {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        let mut push = |sql: &str, bind: AuditBind| {
            binds.push(bind);
            conditions.push(sql.replace('?', &format!("${}", binds.len())));
        };
        if let Some(id) = self.tenant_id {
            push("tenant_id = ?", AuditBind::Int(id));
        }
        if let Some(actor) = &self.actor {
            push("actor = ?", AuditBind::Text(actor.clone()));
        }
        if let Some(action) = &self.action {
            // A prefix match without LIKE's wildcards: substr is portable and escapes nothing.
            push(
                "substr(action, 1, length(?)) = ?",
                AuditBind::Text(action.clone()),
            );
        }
        if let Some(since) = self.since {
            push("at >= ?", AuditBind::Int(since));
        }
        if let Some(until) = self.until {
            push("at < ?", AuditBind::Int(until));
        }
        if self.failed_only {
            conditions.push("status >= 400".into());
        }
        let clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        (clause, binds)
    }
}

enum AuditBind {
    Int(i64),
    Text(String),
}

impl Store {
    /// Appends audit records in one transaction.
    pub async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        for r in records {
            sqlx::query(
                "INSERT INTO audit_log (at, tenant_id, actor, action, object, status, address, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(r.at)
            .bind(r.tenant_id)
            .bind(&r.actor)
            .bind(&r.action)
            .bind(&r.object)
            .bind(r.status)
            .bind(&r.address)
            .bind(&r.detail)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Audit records matching `filter`, newest first, and how many match in all.
    pub async fn audit(
        &self,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<Page<AuditRecord>, sqlx::Error> {
        let (clause, binds) = filter.clause();
        let n = binds.len();
        let select = format!(
            "SELECT id, at, tenant_id, actor, action, object, status, address, detail FROM audit_log{clause} \
             ORDER BY id DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let count = format!("SELECT COUNT(*) FROM audit_log{clause}");
        let mut rows = sqlx::query_as::<_, AuditRecord>(&select);
        let mut total = sqlx::query_scalar::<_, i64>(&count);
        for bind in &binds {
            match bind {
                AuditBind::Int(v) => {
                    rows = rows.bind(*v);
                    total = total.bind(*v);
                }
                AuditBind::Text(v) => {
                    rows = rows.bind(v.clone());
                    total = total.bind(v.clone());
                }
            }
        }
        let records = rows.bind(limit).bind(offset).fetch_all(&self.read).await?;
        let total = total.fetch_one(&self.read).await?;
        Ok(Page {
            rows: records,
            total,
        })
    }
}
