//! The management REST API under `/rest/v1` (docs/management-api.md).
//!
//! Auth: `Authorization: Bearer <token>`; roles viewer (read) < operator (change fleet state) <
//! admin (tokens, tenants). The tenant is chosen with the `X-Keel-Tenant` header (default `default`).

use crate::auth::{self, Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::paging::{page_json, PageRequest};
use crate::store::{
    self, Action, ActionStatus, MaintenanceWindow, NewAction, NewGroup, Page, RolloutStatus, Store,
    Target, Tenant, UpdateStatus,
};
use crate::AppState;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// JSON bodies of the management API (artifact uploads are streamed separately).
pub const MGMT_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Header with which a cross-tenant token picks the tenant to act on (default `default`).
pub const TENANT_HEADER: &str = "x-keel-tenant";

/// The management API routes under `/rest/v1`, without the audit layer (see [`api`]).
pub fn routes() -> Router<Arc<AppState>> {
    let upload = Router::new()
        .route(
            "/rest/v1/softwaremodules/{id}/artifacts",
            post(upload_artifact).get(list_module_artifacts),
        )
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/rest/v1/openapi.json", get(openapi))
        .route("/rest/v1/whoami", get(whoami))
        .route("/rest/v1/tenants", post(create_tenant).get(list_tenants))
        .route(
            "/rest/v1/tenants/{name}/gatewaytoken",
            put(set_gateway_token).delete(delete_gateway_token),
        )
        .route("/rest/v1/tokens", post(create_token).get(list_tokens))
        .route("/rest/v1/tokens/{id}", delete(delete_token))
        .route("/rest/v1/audit", get(audit_log))
        .route(
            "/rest/v1/softwaremodules",
            post(create_module).get(list_modules),
        )
        .route("/rest/v1/softwaremodules/{id}", get(get_module))
        .route("/rest/v1/distributionsets", post(create_set).get(list_sets))
        .route("/rest/v1/distributionsets/{id}", get(get_set))
        .route(
            "/rest/v1/distributionsets/{id}/assignedTargets",
            post(assign_set),
        )
        .route("/rest/v1/targets", post(create_target).get(list_targets))
        .route(
            "/rest/v1/targets/{controller_id}",
            get(get_target).delete(delete_target),
        )
        .route("/rest/v1/targets/{controller_id}/tags", put(set_tags))
        .route(
            "/rest/v1/targets/{controller_id}/token",
            post(rotate_target_token),
        )
        .route(
            "/rest/v1/targets/{controller_id}/requestAttributes",
            post(request_attributes),
        )
        .route(
            "/rest/v1/targets/{controller_id}/assignedDS",
            post(assign_to_target),
        )
        .route(
            "/rest/v1/targets/{controller_id}/actions",
            get(list_actions),
        )
        .route(
            "/rest/v1/targets/{controller_id}/actions/{action_id}",
            get(get_action).delete(cancel_action),
        )
        .route("/rest/v1/rollouts", post(create_rollout).get(list_rollouts))
        .route("/rest/v1/rollouts/{id}", get(get_rollout))
        .route(
            "/rest/v1/rollouts/{id}/{operation}",
            post(rollout_operation),
        )
        .layer(DefaultBodyLimit::max(MGMT_BODY_LIMIT))
        .merge(upload)
}

/// The management API with its audit layer: what the server serves and what the dashboard calls
/// in-process.
pub fn api(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    routes().route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::audit::management,
    ))
}

async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

/// Authenticates the caller for `role` and resolves the tenant it acts on.
async fn tenant_for(state: &AppState, headers: &HeaderMap, role: Role) -> ApiResult<Tenant> {
    Ok(acting(state, headers, role).await?.1)
}

/// Authenticates the caller for `role` and resolves the tenant it acts on: a tenant-bound token
/// acts on its own tenant (an `X-Keel-Tenant` naming another one is refused with 403, whether
/// that tenant exists or not); a cross-tenant token acts on the tenant `X-Keel-Tenant` names,
/// `default` without the header.
async fn acting(state: &AppState, headers: &HeaderMap, role: Role) -> ApiResult<(Caller, Tenant)> {
    // auth::management_role has already refused a bound token naming another tenant.
    let caller = auth::management_role(&state.store, headers, role).await?;
    let tenant = match caller.tenant_id {
        Some(own) => state
            .store
            .tenant_by_id(own)
            .await?
            .ok_or_else(|| ApiError::Forbidden("the token's tenant no longer exists".into()))?,
        None => {
            let name = match headers.get(TENANT_HEADER) {
                Some(value) => value
                    .to_str()
                    .map_err(|_| ApiError::bad_request("X-Keel-Tenant is not text"))?,
                None => "default",
            };
            state
                .store
                .tenant_by_name(name)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("tenant {name:?}")))?
        }
    };
    crate::audit::note_tenant(tenant.id);
    Ok((caller, tenant))
}

fn foreign_tenant(own: &Tenant, named: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "this token belongs to tenant {:?} and may not act on tenant {named:?}",
        own.name
    ))
}

/// The tenant called `name` if the caller may administer it (its own, or any for a cross-tenant
/// token); another tenant is refused with 403 whether it exists or not.
async fn administered_tenant(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
) -> ApiResult<Tenant> {
    let caller = auth::management_role(&state.store, headers, Role::Admin).await?;
    if let Some(own) = caller.tenant_id {
        let tenant = state
            .store
            .tenant_by_id(own)
            .await?
            .ok_or_else(|| ApiError::Forbidden("the token's tenant no longer exists".into()))?;
        if !name.eq_ignore_ascii_case(&tenant.name) {
            return Err(foreign_tenant(&tenant, name));
        }
        crate::audit::note_tenant(tenant.id);
        return Ok(tenant);
    }
    let tenant = state
        .store
        .tenant_by_name(name)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    crate::audit::note_tenant(tenant.id);
    Ok(tenant)
}

fn check_name(what: &str, value: &str) -> ApiResult<()> {
    if value.trim().is_empty() || value.len() > 128 || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{what}: 1..128 printable characters"
        )));
    }
    Ok(())
}

fn created(value: Value) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

fn conflict_on_unique(err: sqlx::Error, what: &str) -> ApiError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            ApiError::Conflict(format!("{what} already exists"))
        }
        _ => ApiError::Database(err),
    }
}

// ---------- identity, tenants, tokens ----------

async fn whoami(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    // With X-Keel-Tenant, the tenant the caller would act on (403 for another tenant's token);
    // without, the tenant the token is bound to.
    let (caller, tenant) = if headers.contains_key(TENANT_HEADER) {
        let (caller, tenant) = acting(&state, &headers, Role::Viewer).await?;
        (caller, Some(tenant.name))
    } else {
        let caller = auth::management_role(&state.store, &headers, Role::Viewer).await?;
        let tenant = match caller.tenant_id {
            Some(id) => state.store.tenant_by_id(id).await?.map(|t| t.name),
            None => None,
        };
        (caller, tenant)
    };
    Ok(Json(json!({
        "name": caller.name,
        "role": caller.role.as_str(),
        "tenant": tenant,
        "crossTenant": caller.is_cross_tenant(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantBody {
    name: String,
}

async fn create_tenant(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TenantBody>,
) -> ApiResult<Response> {
    let caller = auth::management_role(&state.store, &headers, Role::Admin).await?;
    if !caller.is_cross_tenant() {
        return Err(ApiError::Forbidden(
            "creating tenants needs a cross-tenant admin token \
             (keel-server create-token --cross-tenant); this token belongs to one tenant"
                .into(),
        ));
    }
    check_name("name", &body.name)?;
    // "rest" would shadow the management API's path prefix.
    if body.name == "rest" || body.name.contains('/') {
        return Err(ApiError::bad_request(
            "tenant name may not be \"rest\" or contain '/'",
        ));
    }
    if state.store.tenant_by_name(&body.name).await?.is_some() {
        return Err(ApiError::Conflict(
            "tenant already exists (tenant names are compared without regard to case)".into(),
        ));
    }
    let tenant = state
        .store
        .create_tenant(&body.name)
        .await
        .map_err(|e| conflict_on_unique(e, "tenant"))?;
    Ok(created(json!({ "id": tenant.id, "name": tenant.name })))
}

async fn list_tenants(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let caller = auth::management_role(&state.store, &headers, Role::Admin).await?;
    let page = PageRequest::parse(query.as_deref(), &store::TENANT_LISTING)?;
    let Page {
        rows: tenants,
        total,
    } = state.store.tenants_page(caller.tenant_id, &page).await?;
    let tenants: Vec<Value> = tenants
        .into_iter()
        .map(|t| json!({ "id": t.id, "name": t.name, "gatewayToken": t.gateway_token_hash.is_some() }))
        .collect();
    Ok(Json(page_json(tenants, total)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenValue {
    token: Option<String>,
}

async fn set_gateway_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let tenant = administered_tenant(&state, &headers, &name).await?;
    let token = chosen_token(optional_json::<TokenValue>(&body)?.token)?;
    state
        .store
        .set_gateway_token(tenant.id, Some(&auth::hash_token(&token)))
        .await?;
    Ok(Json(
        json!({ "tenant": tenant.name, "gatewayToken": token }),
    ))
}

async fn delete_gateway_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let tenant = administered_tenant(&state, &headers, &name).await?;
    state.store.set_gateway_token(tenant.id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A JSON body that may be left out entirely.
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    crate::extract::decode_json(body)
}

/// A caller-chosen token (hawkBit allows up to 128 characters) or a generated one.
fn chosen_token(token: Option<String>) -> ApiResult<String> {
    match token {
        Some(token) => {
            if token.len() < 8 || token.len() > 128 || !token.chars().all(|c| c.is_ascii_graphic())
            {
                return Err(ApiError::bad_request(
                    "token: 8..128 printable ASCII characters",
                ));
            }
            Ok(token)
        }
        None => Ok(auth::generate_token()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: String,
}

async fn create_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<Response> {
    let tenant = tenant_for(&state, &headers, Role::Admin).await?;
    check_name("name", &body.name)?;
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError::bad_request("role: viewer, operator or admin"))?;
    let token = auth::generate_token();
    let id = state
        .store
        .create_api_token(
            &body.name,
            &auth::hash_token(&token),
            role.as_str(),
            Some(tenant.id),
        )
        .await?;
    Ok(created(
        json!({ "id": id, "name": body.name, "role": role.as_str(), "tenant": tenant.name, "token": token }),
    ))
}

async fn list_tokens(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Admin).await?;
    let page = PageRequest::parse(query.as_deref(), &store::TOKEN_LISTING)?;
    let Page {
        rows: tokens,
        total,
    } = state.store.api_tokens_page(tenant.id, &page).await?;
    let tokens: Vec<Value> = tokens
        .into_iter()
        .map(|t| json!({ "id": t.id, "name": t.name, "role": t.role, "createdAt": t.created_at }))
        .collect();
    Ok(Json(page_json(tokens, total)))
}

async fn delete_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    let tenant = tenant_for(&state, &headers, Role::Admin).await?;
    if state.store.delete_api_token(tenant.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("token"))
    }
}

// ---------- audit log ----------

/// Most audit records one page returns.
const AUDIT_PAGE_MAX: i64 = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    offset: i64,
    limit: Option<i64>,
    actor: Option<String>,
    action: Option<String>,
    /// Milliseconds since the Unix epoch.
    since: Option<i64>,
    until: Option<i64>,
    #[serde(default)]
    failed: bool,
    #[serde(default)]
    all: bool,
}

async fn audit_log(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Value>> {
    let (caller, tenant) = acting(&state, &headers, Role::Admin).await?;
    if query.all && !caller.is_cross_tenant() {
        return Err(ApiError::Forbidden(
            "all=true (every tenant's records) needs a cross-tenant token".into(),
        ));
    }
    let limit = query.limit.unwrap_or(50);
    if !(1..=AUDIT_PAGE_MAX).contains(&limit) || query.offset < 0 {
        return Err(ApiError::bad_request(format!(
            "limit: 1..{AUDIT_PAGE_MAX}; offset: 0 or more"
        )));
    }
    let filter = crate::store::AuditFilter {
        tenant_id: (!query.all).then_some(tenant.id),
        actor: query.actor,
        action: query.action,
        since: query.since,
        until: query.until,
        failed_only: query.failed,
    };
    let Page {
        rows: records,
        total,
    } = state.store.audit(&filter, query.offset, limit).await?;
    Ok(Json(json!({
        "content": records,
        "total": total,
        "size": records.len(),
        "offset": query.offset,
    })))
}

// ---------- software modules and artifacts ----------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewModule {
    name: String,
    version: String,
    #[serde(rename = "type", default = "default_module_type")]
    module_type: String,
}

fn default_module_type() -> String {
    "os".into()
}

async fn create_module(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewModule>,
) -> ApiResult<Response> {
    let tenant = tenant_for(&state, &headers, Role::Operator).await?;
    check_name("name", &body.name)?;
    check_name("version", &body.version)?;
    check_name("type", &body.module_type)?;
    let module = state
        .store
        .create_module(tenant.id, &body.module_type, &body.name, &body.version)
        .await
        .map_err(|e| conflict_on_unique(e, "software module"))?;
    Ok(created(json!(module)))
}

async fn list_modules(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Viewer).await?;
    let page = PageRequest::parse(query.as_deref(), &store::MODULE_LISTING)?;
    let Page {
        rows: modules,
        total,
    } = state.store.modules_page(tenant.id, &page).await?;
    Ok(Json(page_json(
        modules.iter().map(|m| json!(m)).collect(),
        total,
    )))
}

async fn get_module(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Viewer).await?;
    let module = state
        .store
        .module(tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("software module"))?;
    let mut value = json!(module);
    value["artifacts"] = crate::variants::artifacts_json(&state.store, id).await?;
    Ok(Json(value))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    filename: String,
}

/// Streams the raw request body into the artifact store, hashing it on the way in.
async fn upload_artifact(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    body: Body,
) -> ApiResult<Response> {
    crate::serve::check_declared_length(&headers, state.config.max_artifact_bytes)?;
    let tenant = tenant_for(&state, &headers, Role::Operator).await?;
    let module = state
        .store
        .module(tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("software module"))?;
    let filename = query.filename;
    check_name("filename", &filename)?;
    if filename.contains('/') || filename == "." || filename == ".." {
        return Err(ApiError::bad_request("filename may not contain '/'"));
    }
    if state
        .store
        .artifact_by_name(module.id, &filename)
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "artifact {filename:?} already exists in module {}",
            module.id
        )));
    }
    // The first bytes classify a bundle (full / delta / chunked) once it is stored.
    let (upload, head) =
        crate::variants::capture_head(body.into_data_stream(), crate::variants::HEAD_LIMIT);
    let stored = state
        .files
        .ingest(upload, state.config.max_artifact_bytes)
        .await?;
    let size = i64::try_from(stored.size)
        .map_err(|_| ApiError::PayloadTooLarge("artifact too large".into()))?;
    let artifact = state
        .store
        .create_artifact(
            module.id,
            &filename,
            &stored.sha256,
            &stored.sha1,
            &stored.md5,
            size,
        )
        .await
        .map_err(|e| conflict_on_unique(e, "artifact"))?;
    crate::tuf::add_artifact(
        &state,
        &tenant.name,
        &module.name,
        &module.version,
        &filename,
        &stored.sha256,
        stored.size,
    )
    .await?;
    let variant = head
        .lock()
        .ok()
        .and_then(|head| crate::variants::classify(&head));
    if let Some(variant) = &variant {
        state
            .store
            .set_artifact_variant(artifact.id, variant)
            .await?;
    }
    Ok(created(crate::variants::artifact_json(
        &artifact,
        variant.as_ref(),
    )))
}

async fn list_module_artifacts(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Viewer).await?;
    state
        .store
        .module(tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("software module"))?;
    let page = PageRequest::parse(query.as_deref(), &store::ARTIFACT_LISTING)?;
    let Page {
        rows: artifacts,
        total,
    } = state.store.artifacts_page(id, &page).await?;
    let variants = state.store.artifact_variants(id).await?;
    Ok(Json(page_json(
        artifacts
            .iter()
            .map(|a| crate::variants::artifact_json(a, variants.get(&a.id)))
            .collect(),
        total,
    )))
}

// ---------- distribution sets ----------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSet {
    name: String,
    version: String,
    modules: Vec<i64>,
}

async fn create_set(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewSet>,
) -> ApiResult<Response> {
    let tenant = tenant_for(&state, &headers, Role::Operator).await?;
    check_name("name", &body.name)?;
    check_name("version", &body.version)?;
    if body.modules.is_empty() {
        return Err(ApiError::bad_request(
            "modules: at least one software module id",
        ));
    }
    for id in &body.modules {
        state
            .store
            .module(tenant.id, *id)
            .await?
            .ok_or_else(|| ApiError::bad_request(format!("no software module {id}")))?;
    }
    let set = state
        .store
        .create_distribution_set(tenant.id, &body.name, &body.version, &body.modules)
        .await
        .map_err(|e| conflict_on_unique(e, "distribution set"))?;
    set_json(&state.store, set).await.map(created)
}

async fn set_json(store: &Store, set: crate::store::DistributionSet) -> ApiResult<Value> {
    let mut value = json!(set);
    let mut modules = Vec::new();
    for module in store.set_modules(set.id).await? {
        let mut m = json!(module);
        m["artifacts"] = crate::variants::artifacts_json(store, module.id).await?;
        modules.push(m);
    }
    value["modules"] = Value::Array(modules);
    Ok(value)
}

async fn list_sets(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Viewer).await?;
    let page = PageRequest::parse(query.as_deref(), &store::SET_LISTING)?;
    let Page { rows: sets, total } = state.store.distribution_sets_page(tenant.id, &page).await?;
    Ok(Json(page_json(
        sets.iter().map(|s| json!(s)).collect(),
        total,
    )))
}

async fn get_set(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Viewer).await?;
    let set = state
        .store
        .distribution_set(tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("distribution set"))?;
    Ok(Json(set_json(&state.store, set).await?))
}

// ---------- targets ----------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTarget {
    #[serde(rename = "controllerId")]
    controller_id: String,
    name: Option<String>,
    #[serde(rename = "securityToken")]
    security_token: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

async fn target_json(store: &Store, target: &Target) -> ApiResult<Value> {
    let actions = store.target_actions(target.id).await?;
    let open = actions.iter().any(|a| a.active != 0);
    let last = actions.last();
    let update_status = if open {
        UpdateStatus::Pending
    } else if last.is_some_and(|a| a.status == ActionStatus::Error) {
        UpdateStatus::Error
    } else if target.installed_action_id.is_some() {
        UpdateStatus::InSync
    } else if target.last_poll_at.is_some() {
        UpdateStatus::Registered
    } else {
        UpdateStatus::Unknown
    };
    let attributes: BTreeMap<String, String> =
        serde_json::from_str(&target.attributes).unwrap_or_default();
    let installed_set = match target.installed_action_id {
        Some(id) => actions.iter().find(|a| a.id == id).map(|a| a.ds_id),
        None => None,
    };
    Ok(json!({
        "controllerId": target.controller_id,
        "name": target.name,
        "tags": store.target_tags(target.id).await?,
        "attributes": attributes,
        "updateStatus": update_status,
        "installedActionId": target.installed_action_id,
        "installedDistributionSetId": installed_set,
        "lastPollAt": target.last_poll_at,
        "address": target.address,
        "createdAt": target.created_at,
    }))
}

fn check_tags(tags: &[String]) -> ApiResult<()> {
    for tag in tags {
        check_name("tag", tag)?;
    }
    Ok(())
}

async fn create_target(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewTarget>,
) -> ApiResult<Response> {
    let tenant = tenant_for(&state, &headers, Role::Operator).await?;
    if !auth::valid_controller_id(&body.controller_id) {
        return Err(ApiError::bad_request(
            "controllerId: 1..256 characters, no '/' or control characters",
        ));
    }
    check_tags(&body.tags)?;
    let name = body.name.unwrap_or_else(|| body.controller_id.clone());
    check_name("name", &name)?;
    let token = chosen_token(body.security_token)?;
    let target = state
        .store
        .create_target(
            tenant.id,
            &body.controller_id,
            &name,
            Some(&auth::hash_token(&token)),
            &body.tags,
        )
        .await
        .map_err(|e| conflict_on_unique(e, "target"))?;
    let mut value = target_json(&state.store, &target).await?;
    // The only time the token is shown: only its hash is stored.
    value["securityToken"] = json!(token);
    Ok(created(value))
}

/// Devices, a page at a time; `tag=x` (exact) is kept besides `q=tag==x*` (patterns).
async fn list_targets(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Viewer).await?;
    let page = PageRequest::parse(query.as_deref(), &store::TARGET_LISTING)?;
    let Page {
        rows: targets,
        total,
    } = state
        .store
        .targets_page(tenant.id, page.extra("tag"), &page)
        .await?;
    let mut list = Vec::with_capacity(targets.len());
    for target in &targets {
        list.push(target_json(&state.store, target).await?);
    }
    Ok(Json(page_json(list, total)))
}

async fn find_target(state: &AppState, tenant: &Tenant, controller_id: &str) -> ApiResult<Target> {
    state
        .store
        .target(tenant.id, controller_id)
        .await?
        .ok_or_else(|| ApiError::not_found("target"))
}

async fn get_target(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(controller_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Viewer).await?;
    let target = find_target(&state, &tenant, &controller_id).await?;
    Ok(Json(target_json(&state.store, &target).await?))
}

async fn delete_target(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(controller_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let tenant = tenant_for(&state, &headers, Role::Operator).await?;
    let target = find_target(&state, &tenant, &controller_id).await?;
    state.store.delete_target(target.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tags {
    tags: Vec<String>,
}

async fn set_tags(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(controller_id): ApiPath<String>,
    ApiJson(body): ApiJson<Tags>,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Operator).await?;
    check_tags(&body.tags)?;
    let target = find_target(&state, &tenant, &controller_id).await?;
    state.store.set_target_tags(target.id, &body.tags).await?;
    Ok(Json(target_json(&state.store, &target).await?))
}

async fn rotate_target_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(controller_id): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Operator).await?;
    let target = find_target(&state, &tenant, &controller_id).await?;
    let token = chosen_token(optional_json::<TokenValue>(&body)?.token)?;
    state
        .store
        .set_target_token(target.id, &auth::hash_token(&token))
        .await?;
    Ok(Json(
        json!({ "controllerId": target.controller_id, "securityToken": token }),
    ))
}

async fn request_attributes(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(controller_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let tenant = tenant_for(&state, &headers, Role::Operator).await?;
    let target = find_target(&state, &tenant, &controller_id).await?;
    state.store.request_target_attributes(target.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------- assignments and actions ----------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    schedule: String,
    /// `HH:MM:SS`
    duration: String,
    /// `+HH:MM`, `-HH:MM` or `Z`
    timezone: String,
}

/// The assignment options shared by `assignedDS` and `assignedTargets` (each body lists them
/// itself: serde cannot refuse unknown fields through `flatten`).
struct AssignOptions<'a> {
    action_type: &'a str,
    /// Milliseconds since the epoch; for `timeforced`.
    forcetime: Option<i64>,
    maintenance_window: Option<&'a MaintenanceBody>,
}

fn default_action_type() -> String {
    "forced".into()
}

fn check_action_type(action_type: &str) -> ApiResult<()> {
    match action_type {
        "soft" | "forced" | "timeforced" | "downloadonly" => Ok(()),
        other => Err(ApiError::bad_request(format!(
            "type {other:?}: soft, forced, timeforced or downloadonly"
        ))),
    }
}

fn new_action(options: &AssignOptions) -> ApiResult<NewAction> {
    check_action_type(options.action_type)?;
    if options.action_type == "timeforced" && options.forcetime.is_none() {
        return Err(ApiError::bad_request(
            "type timeforced needs forcetime (ms since the epoch)",
        ));
    }
    let maintenance = match options.maintenance_window {
        Some(mw) => {
            crate::ddi::parse_schedule(&mw.schedule).map_err(ApiError::BadRequest)?;
            crate::ddi::parse_timezone(&mw.timezone).ok_or_else(|| {
                ApiError::bad_request("maintenanceWindow.timezone: +HH:MM, -HH:MM or Z")
            })?;
            let duration_secs = crate::parse_poll_interval(&mw.duration)
                .map_err(|e| ApiError::bad_request(format!("maintenanceWindow.duration: {e}")))?;
            Some(MaintenanceWindow {
                schedule: mw.schedule.clone(),
                duration_secs: i64::from(duration_secs),
                timezone: mw.timezone.clone(),
            })
        }
        None => None,
    };
    Ok(NewAction {
        action_type: options.action_type.to_string(),
        forcetime: options.forcetime,
        maintenance,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignToTarget {
    /// Distribution set id.
    id: i64,
    #[serde(rename = "type", default = "default_action_type")]
    action_type: String,
    forcetime: Option<i64>,
    #[serde(rename = "maintenanceWindow")]
    maintenance_window: Option<MaintenanceBody>,
}

impl AssignToTarget {
    fn options(&self) -> AssignOptions<'_> {
        AssignOptions {
            action_type: &self.action_type,
            forcetime: self.forcetime,
            maintenance_window: self.maintenance_window.as_ref(),
        }
    }
}

async fn assign_to_target(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(controller_id): ApiPath<String>,
    ApiJson(body): ApiJson<AssignToTarget>,
) -> ApiResult<Response> {
    let tenant = tenant_for(&state, &headers, Role::Operator).await?;
    let target = find_target(&state, &tenant, &controller_id).await?;
    state
        .store
        .distribution_set(tenant.id, body.id)
        .await?
        .ok_or_else(|| ApiError::not_found("distribution set"))?;
    let new = new_action(&body.options())?;
    let mut tx = state.store.begin().await?;
    let action = Store::create_action_in(&mut tx, &target, body.id, &new).await?;
    tx.commit().await?;
    Ok(created(json!(action)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignToMany {
    #[serde(default)]
    targets: Vec<String>,
    tag: Option<String>,
    #[serde(rename = "type", default = "default_action_type")]
    action_type: String,
    forcetime: Option<i64>,
    #[serde(rename = "maintenanceWindow")]
    maintenance_window: Option<MaintenanceBody>,
}

impl AssignToMany {
    fn options(&self) -> AssignOptions<'_> {
        AssignOptions {
            action_type: &self.action_type,
            forcetime: self.forcetime,
            maintenance_window: self.maintenance_window.as_ref(),
        }
    }
}

async fn resolve_targets(
    state: &AppState,
    tenant: &Tenant,
    controller_ids: &[String],
    tag: Option<&str>,
) -> ApiResult<Vec<Target>> {
    let mut targets = Vec::new();
    for id in controller_ids {
        let target = state
            .store
            .target(tenant.id, id)
            .await?
            .ok_or_else(|| ApiError::bad_request(format!("no target {id:?}")))?;
        targets.push(target);
    }
    if let Some(tag) = tag {
        for target in state.store.targets(tenant.id, Some(tag)).await? {
            if !targets.iter().any(|t| t.id == target.id) {
                targets.push(target);
            }
        }
    }
    Ok(targets)
}

/// Assigns a distribution set to a group of devices (listed and/or by tag) in one transaction.
async fn assign_set(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(ds_id): ApiPath<i64>,
    ApiJson(body): ApiJson<AssignToMany>,
) -> ApiResult<Response> {
    let tenant = tenant_for(&state, &headers, Role::Operator).await?;
    state
        .store
        .distribution_set(tenant.id, ds_id)
        .await?
        .ok_or_else(|| ApiError::not_found("distribution set"))?;
    let new = new_action(&body.options())?;
    let targets = resolve_targets(&state, &tenant, &body.targets, body.tag.as_deref()).await?;
    if targets.is_empty() {
        return Err(ApiError::bad_request(
            "no targets selected (give targets and/or tag)",
        ));
    }
    let mut tx = state.store.begin().await?;
    let mut actions = Vec::new();
    for target in &targets {
        let action = Store::create_action_in(&mut tx, target, ds_id, &new).await?;
        actions.push(json!({ "controllerId": target.controller_id, "actionId": action.id }));
    }
    tx.commit().await?;
    Ok(created(
        json!({ "assigned": actions.len(), "actions": actions }),
    ))
}

async fn target_action(state: &AppState, target: &Target, action_id: i64) -> ApiResult<Action> {
    match state.store.action(action_id).await? {
        Some(action) if action.target_id == target.id => Ok(action),
        _ => Err(ApiError::not_found("action")),
    }
}

async fn list_actions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(controller_id): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Viewer).await?;
    let target = find_target(&state, &tenant, &controller_id).await?;
    let page = PageRequest::parse(query.as_deref(), &store::ACTION_LISTING)?;
    let Page {
        rows: actions,
        total,
    } = state.store.target_actions_page(target.id, &page).await?;
    Ok(Json(page_json(
        actions.iter().map(|a| json!(a)).collect(),
        total,
    )))
}

async fn get_action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath((controller_id, action_id)): ApiPath<(String, i64)>,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Viewer).await?;
    let target = find_target(&state, &tenant, &controller_id).await?;
    let action = target_action(&state, &target, action_id).await?;
    let history: Vec<Value> = state
        .store
        .action_history(action.id)
        .await?
        .into_iter()
        .map(|entry| {
            let messages: Vec<String> = serde_json::from_str(&entry.messages).unwrap_or_default();
            let mut value = json!(entry);
            value["messages"] = json!(messages);
            value
        })
        .collect();
    let mut value = json!(action);
    value["history"] = Value::Array(history);
    Ok(Json(value))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelQuery {
    #[serde(default)]
    force: bool,
}

async fn cancel_action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath((controller_id, action_id)): ApiPath<(String, i64)>,
    ApiQuery(query): ApiQuery<CancelQuery>,
) -> ApiResult<Json<Value>> {
    let (caller, tenant) = acting(&state, &headers, Role::Operator).await?;
    let target = find_target(&state, &tenant, &controller_id).await?;
    let action = target_action(&state, &target, action_id).await?;
    if !state
        .store
        .cancel_action(action.id, query.force, &caller.display_name())
        .await?
    {
        return Err(ApiError::Conflict(format!(
            "action {action_id} is already closed"
        )));
    }
    let action = target_action(&state, &target, action_id).await?;
    Ok(Json(json!(action)))
}

// ---------- rollouts ----------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    name: Option<String>,
    #[serde(default)]
    targets: Vec<String>,
    tag: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRollout {
    name: String,
    #[serde(rename = "distributionSetId")]
    ds_id: i64,
    #[serde(rename = "type", default = "default_action_type")]
    action_type: String,
    /// Percentage of a group that must finish successfully before the next group starts.
    #[serde(rename = "successThreshold", default = "default_success")]
    success_threshold: i64,
    /// Percentage of a group that may fail; above it the rollout halts.
    #[serde(rename = "errorThreshold", default)]
    error_threshold: i64,
    /// Explicit groups.
    #[serde(default)]
    groups: Vec<GroupBody>,
    /// Or: split these targets (listed and/or by tag) into this many groups.
    #[serde(rename = "amountGroups")]
    amount_groups: Option<usize>,
    #[serde(default)]
    targets: Vec<String>,
    tag: Option<String>,
}

fn default_success() -> i64 {
    100
}

async fn create_rollout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewRollout>,
) -> ApiResult<Response> {
    let tenant = tenant_for(&state, &headers, Role::Operator).await?;
    check_name("name", &body.name)?;
    check_action_type(&body.action_type)?;
    if body.action_type == "timeforced" {
        return Err(ApiError::bad_request(
            "rollouts support soft, forced and downloadonly",
        ));
    }
    for (what, value) in [
        ("successThreshold", body.success_threshold),
        ("errorThreshold", body.error_threshold),
    ] {
        if !(0..=100).contains(&value) {
            return Err(ApiError::bad_request(format!("{what}: 0..100 (percent)")));
        }
    }
    state
        .store
        .distribution_set(tenant.id, body.ds_id)
        .await?
        .ok_or_else(|| ApiError::not_found("distribution set"))?;
    let mut groups: Vec<NewGroup> = Vec::new();
    if !body.groups.is_empty() {
        if body.amount_groups.is_some() {
            return Err(ApiError::bad_request("give either groups or amountGroups"));
        }
        for (i, group) in body.groups.iter().enumerate() {
            let name = group
                .name
                .clone()
                .unwrap_or_else(|| format!("group-{}", i + 1));
            check_name("group name", &name)?;
            let targets =
                resolve_targets(&state, &tenant, &group.targets, group.tag.as_deref()).await?;
            groups.push(NewGroup {
                name,
                target_ids: targets.iter().map(|t| t.id).collect(),
            });
        }
    } else {
        let amount = body.amount_groups.unwrap_or(1);
        if amount == 0 || amount > 500 {
            return Err(ApiError::bad_request("amountGroups: 1..500"));
        }
        let targets = resolve_targets(&state, &tenant, &body.targets, body.tag.as_deref()).await?;
        let per_group = targets.len().div_ceil(amount).max(1);
        for (i, chunk) in targets.chunks(per_group).enumerate() {
            groups.push(NewGroup {
                name: format!("group-{}", i + 1),
                target_ids: chunk.iter().map(|t| t.id).collect(),
            });
        }
    }
    // A device in two groups would get two actions for the same set.
    let mut seen = std::collections::HashSet::new();
    for group in &groups {
        if group.target_ids.is_empty() {
            return Err(ApiError::bad_request(format!(
                "group {:?} has no targets",
                group.name
            )));
        }
        for id in &group.target_ids {
            if !seen.insert(*id) {
                return Err(ApiError::bad_request("a target may be in only one group"));
            }
        }
    }
    if groups.is_empty() {
        return Err(ApiError::bad_request("no targets selected"));
    }
    let rollout = state
        .store
        .create_rollout(
            tenant.id,
            &store::NewRollout {
                name: body.name,
                ds_id: body.ds_id,
                action_type: body.action_type,
                success_threshold: body.success_threshold,
                error_threshold: body.error_threshold,
                groups,
            },
        )
        .await?;
    rollout_json(&state.store, &rollout).await.map(created)
}

async fn rollout_json(store: &Store, rollout: &crate::store::Rollout) -> ApiResult<Value> {
    let mut value = json!(rollout);
    let mut groups = Vec::new();
    let mut totals = crate::store::GroupCounts::default();
    for group in store.rollout_groups(rollout.id).await? {
        let counts = store.group_counts(group.id).await?;
        totals.total += counts.total;
        totals.scheduled += counts.scheduled;
        totals.running += counts.running;
        totals.finished += counts.finished;
        totals.error += counts.error;
        totals.canceled += counts.canceled;
        let mut g = json!(group);
        g["counts"] = json!(counts);
        groups.push(g);
    }
    value["groups"] = Value::Array(groups);
    value["counts"] = json!(totals);
    Ok(value)
}

/// Rollouts without their groups (`GET /rest/v1/rollouts/{id}` has them with counts).
async fn list_rollouts(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Viewer).await?;
    let page = PageRequest::parse(query.as_deref(), &store::ROLLOUT_LISTING)?;
    let Page {
        rows: rollouts,
        total,
    } = state.store.rollouts_page(tenant.id, &page).await?;
    Ok(Json(page_json(
        rollouts.iter().map(|r| json!(r)).collect(),
        total,
    )))
}

async fn get_rollout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let tenant = tenant_for(&state, &headers, Role::Viewer).await?;
    let rollout = state
        .store
        .rollout(tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rollout"))?;
    Ok(Json(rollout_json(&state.store, &rollout).await?))
}

async fn rollout_operation(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath((id, operation)): ApiPath<(i64, String)>,
) -> ApiResult<Json<Value>> {
    let (caller, tenant) = acting(&state, &headers, Role::Operator).await?;
    let by = caller.display_name();
    let rollout = state
        .store
        .rollout(tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rollout"))?;
    let changed = match operation.as_str() {
        "start" => {
            let started = state
                .store
                .set_rollout_status(id, &[RolloutStatus::Ready], RolloutStatus::Running, None)
                .await?;
            if started {
                // Start the first group now rather than at the next scheduler tick.
                crate::scheduler::tick(&state.store).await?;
            }
            started
        }
        "pause" => {
            state
                .store
                .set_rollout_status(
                    id,
                    &[RolloutStatus::Running],
                    RolloutStatus::Paused,
                    Some(&format!("paused by {by}")),
                )
                .await?
        }
        "resume" => {
            state
                .store
                .set_rollout_status(
                    id,
                    &[RolloutStatus::Paused, RolloutStatus::Halted],
                    RolloutStatus::Running,
                    None,
                )
                .await?
        }
        "cancel" => state.store.cancel_rollout(id, &by).await?,
        _ => {
            return Err(ApiError::not_found(format!(
                "rollout operation {operation:?}"
            )))
        }
    };
    if !changed {
        return Err(ApiError::Conflict(format!(
            "cannot {operation} a rollout that is {}",
            rollout.status
        )));
    }
    let rollout = state
        .store
        .rollout(tenant.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rollout"))?;
    Ok(Json(rollout_json(&state.store, &rollout).await?))
}
