//! Management API list pages (crate::paging: offset, limit, sort, q).

use super::actions::ACTION_COLUMNS;
use super::dashboard::DEVICE_STATE_SQL;
use super::rollouts::ROLLOUT_COLUMNS;
use super::targets::TARGET_COLUMNS;
use super::{
    Action, ApiTokenRow, Artifact, DistributionSet, Page, Rollout, SoftwareModule, Store, Target,
    Tenant,
};
use crate::paging::{Bind, Field, Kind, Listing, PageRequest};

/// `GET /rest/v1/targets`: targets as `t`.
pub const TARGET_LISTING: Listing = Listing {
    fields: &[
        Field::text("controllerId", "t.controller_id"),
        Field::text("name", "t.name"),
        Field::text("updateStatus", DEVICE_STATE_SQL),
        Field::int(
            "installedDistributionSetId",
            "(SELECT a.ds_id FROM actions a WHERE a.id = t.installed_action_id)",
        )
        .nullable(),
        Field::int("lastPollAt", "t.last_poll_at").nullable(),
        Field::text("address", "t.address").nullable(),
        Field::int("createdAt", "t.created_at"),
        Field {
            name: "tag",
            sql: "g.tag",
            kind: Kind::Exists(
                "EXISTS (SELECT 1 FROM target_tags g WHERE g.target_id = t.id AND {})",
            ),
            nullable: false,
        },
    ],
    tie: "t.id",
    extra_params: &["tag"],
};

/// `GET /rest/v1/softwaremodules`: the fields it sorts and filters on.
pub const MODULE_LISTING: Listing = Listing {
    fields: &[
        Field::int("id", "id"),
        Field::text("type", "module_type"),
        Field::text("name", "name"),
        Field::text("version", "version"),
        Field::int("createdAt", "created_at"),
    ],
    tie: "id",
    extra_params: &[],
};

/// `GET /rest/v1/distributionsets`: the fields it sorts and filters on.
pub const SET_LISTING: Listing = Listing {
    fields: &[
        Field::int("id", "id"),
        Field::text("name", "name"),
        Field::text("version", "version"),
        Field::int("createdAt", "created_at"),
    ],
    tie: "id",
    extra_params: &[],
};

/// `GET /rest/v1/softwaremodules/{id}/artifacts`: the fields it sorts and filters on.
pub const ARTIFACT_LISTING: Listing = Listing {
    fields: &[
        Field::int("id", "id"),
        Field::text("filename", "filename"),
        Field::text("sha256", "sha256"),
        Field::int("size", "size"),
        Field::int("createdAt", "created_at"),
    ],
    tie: "id",
    extra_params: &[],
};

/// `GET /rest/v1/targets/{id}/actions`: the fields it sorts and filters on.
pub const ACTION_LISTING: Listing = Listing {
    fields: &[
        Field::int("id", "id"),
        Field::int("distributionSetId", "ds_id"),
        Field::int("rolloutId", "rollout_id").nullable(),
        Field::text("type", "action_type"),
        Field::text("status", "status"),
        Field {
            name: "active",
            sql: "active",
            kind: Kind::Bool,
            nullable: false,
        },
        Field::int("createdAt", "created_at"),
        Field::int("updatedAt", "updated_at"),
    ],
    tie: "id",
    extra_params: &[],
};

/// `GET /rest/v1/rollouts`: the fields it sorts and filters on.
pub const ROLLOUT_LISTING: Listing = Listing {
    fields: &[
        Field::int("id", "id"),
        Field::text("name", "name"),
        Field::int("distributionSetId", "ds_id"),
        Field::text("type", "action_type"),
        Field::text("status", "status"),
        Field::int("createdAt", "created_at"),
        Field::int("updatedAt", "updated_at"),
    ],
    tie: "id",
    extra_params: &[],
};

/// `GET /rest/v1/tokens`: the fields it sorts and filters on.
pub const TOKEN_LISTING: Listing = Listing {
    fields: &[
        Field::int("id", "id"),
        Field::text("name", "name"),
        Field::text("role", "role"),
        Field::int("createdAt", "created_at"),
    ],
    tie: "id",
    extra_params: &[],
};

/// `GET /rest/v1/tenants`: the fields it sorts and filters on.
pub const TENANT_LISTING: Listing = Listing {
    fields: &[Field::int("id", "id"), Field::text("name", "name")],
    tie: "id",
    extra_params: &[],
};

impl Store {
    /// One page of `SELECT columns FROM ... WHERE base AND <filter>` and the number of matching
    /// rows. `from_where` holds `$1..$k` for `base`; the filter's placeholders follow.
    async fn list_page<T>(
        &self,
        columns: &str,
        from_where: &str,
        base: Vec<Bind>,
        page: &PageRequest,
    ) -> Result<Page<T>, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let (filter, filter_binds) = page.filter_sql(base.len() + 1);
        let mut binds = base;
        binds.extend(filter_binds);
        let n = binds.len();
        let count_sql = format!("SELECT COUNT(*) {from_where} AND {filter}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for bind in &binds {
            count = match bind {
                Bind::Int(v) => count.bind(*v),
                Bind::Text(v) => count.bind(v.clone()),
            };
        }
        let total = count.fetch_one(&self.read).await?;
        let rows_sql = format!(
            "SELECT {columns} {from_where} AND {filter} ORDER BY {} LIMIT ${} OFFSET ${}",
            page.order_by(),
            n + 1,
            n + 2
        );
        let mut rows = sqlx::query_as::<_, T>(&rows_sql);
        for bind in &binds {
            rows = match bind {
                Bind::Int(v) => rows.bind(*v),
                Bind::Text(v) => rows.bind(v.clone()),
            };
        }
        let rows = rows
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&self.read)
            .await?;
        Ok(Page { rows, total })
    }

    /// Targets of a tenant, optionally only those with exactly `tag`.
    pub async fn targets_page(
        &self,
        tenant_id: i64,
        tag: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Target>, sqlx::Error> {
        let columns = TARGET_COLUMNS
            .split(", ")
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        match tag {
            Some(tag) => {
                self.list_page(
                    &columns,
                    "FROM targets t WHERE t.tenant_id = $1 AND t.id IN \
                     (SELECT target_id FROM target_tags WHERE tag = $2)",
                    vec![Bind::Int(tenant_id), Bind::Text(tag.to_string())],
                    page,
                )
                .await
            }
            None => {
                self.list_page(
                    &columns,
                    "FROM targets t WHERE t.tenant_id = $1",
                    vec![Bind::Int(tenant_id)],
                    page,
                )
                .await
            }
        }
    }

    /// One page of the tenant's modules ([`MODULE_LISTING`]).
    pub async fn modules_page(
        &self,
        tenant_id: i64,
        page: &PageRequest,
    ) -> Result<Page<SoftwareModule>, sqlx::Error> {
        self.list_page(
            "id, tenant_id, module_type, name, version, created_at",
            "FROM software_modules WHERE tenant_id = $1",
            vec![Bind::Int(tenant_id)],
            page,
        )
        .await
    }

    /// One page of the tenant's distribution sets ([`SET_LISTING`]).
    pub async fn distribution_sets_page(
        &self,
        tenant_id: i64,
        page: &PageRequest,
    ) -> Result<Page<DistributionSet>, sqlx::Error> {
        self.list_page(
            "id, tenant_id, name, version, created_at",
            "FROM distribution_sets WHERE tenant_id = $1",
            vec![Bind::Int(tenant_id)],
            page,
        )
        .await
    }

    /// One page of the module's artifacts ([`ARTIFACT_LISTING`]).
    pub async fn artifacts_page(
        &self,
        module_id: i64,
        page: &PageRequest,
    ) -> Result<Page<Artifact>, sqlx::Error> {
        self.list_page(
            "id, module_id, filename, sha256, sha1, md5, size, created_at",
            "FROM artifacts WHERE module_id = $1",
            vec![Bind::Int(module_id)],
            page,
        )
        .await
    }

    /// One page of the target's actions ([`ACTION_LISTING`]).
    pub async fn target_actions_page(
        &self,
        target_id: i64,
        page: &PageRequest,
    ) -> Result<Page<Action>, sqlx::Error> {
        self.list_page(
            ACTION_COLUMNS,
            "FROM actions WHERE target_id = $1",
            vec![Bind::Int(target_id)],
            page,
        )
        .await
    }

    /// One page of the tenant's rollouts ([`ROLLOUT_LISTING`]).
    pub async fn rollouts_page(
        &self,
        tenant_id: i64,
        page: &PageRequest,
    ) -> Result<Page<Rollout>, sqlx::Error> {
        self.list_page(
            ROLLOUT_COLUMNS,
            "FROM rollouts WHERE tenant_id = $1",
            vec![Bind::Int(tenant_id)],
            page,
        )
        .await
    }

    /// The tokens bound to `tenant_id` (cross-tenant tokens are listed by the command line only).
    pub async fn api_tokens_page(
        &self,
        tenant_id: i64,
        page: &PageRequest,
    ) -> Result<Page<ApiTokenRow>, sqlx::Error> {
        self.list_page(
            "id, name, role, created_at",
            "FROM api_tokens WHERE tenant_id = $1",
            vec![Bind::Int(tenant_id)],
            page,
        )
        .await
    }

    /// Tenants; `only = Some(id)`: just that one (what a tenant-bound caller may see).
    pub async fn tenants_page(
        &self,
        only: Option<i64>,
        page: &PageRequest,
    ) -> Result<Page<Tenant>, sqlx::Error> {
        let (from_where, base) = match only {
            Some(id) => ("FROM tenants WHERE id = $1", vec![Bind::Int(id)]),
            None => ("FROM tenants WHERE 1 = 1", Vec::new()),
        };
        self.list_page("id, name, gateway_token_hash", from_where, base, page)
            .await
    }
}
