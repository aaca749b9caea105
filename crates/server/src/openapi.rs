//! The OpenAPI 3.0 document served at `/rest/v1/openapi.json`, built from one table of operations.
//!
//! The document is meant to be exact: every status code a route answers is listed with its body
//! schema, nullable fields are `nullable`, request bodies of the management API are
//! `additionalProperties: false` (they are refused with 400 otherwise), and every query parameter a
//! route reads is declared. `scripts/schemathesis.sh` checks the running server against it.

use crate::paging::{Listing, DEFAULT_LIMIT, MAX_LIMIT};
use crate::store;
use serde_json::{json, Map, Value};

/// Who may call a route.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Anyone,
    Viewer,
    Operator,
    Admin,
    Device,
    /// The TUF metadata of a tenant: device credentials, like the rest of the DDI API.
    DeviceTuf,
}

struct Op {
    method: &'static str,
    path: &'static str,
    who: Who,
    summary: &'static str,
    /// JSON request body schema (`binary`: raw upload), and whether it may be left out.
    request: Option<(&'static str, bool)>,
    /// Success status, its JSON schema (None: no body).
    ok: (u16, Option<Value>),
    /// Error statuses beyond the ones every route of its kind answers.
    errors: &'static [u16],
    query: Vec<Value>,
}

fn op(method: &'static str, path: &'static str, who: Who, summary: &'static str) -> Op {
    Op {
        method,
        path,
        who,
        summary,
        request: None,
        ok: (200, None),
        errors: &[],
        query: Vec::new(),
    }
}

impl Op {
    fn body(mut self, schema: &'static str) -> Op {
        self.request = Some((schema, false));
        self
    }
    fn optional_body(mut self, schema: &'static str) -> Op {
        self.request = Some((schema, true));
        self
    }
    fn ok(mut self, status: u16, schema: &str) -> Op {
        self.ok = (status, Some(reference(schema)));
        self
    }
    fn ok_schema(mut self, status: u16, schema: Value) -> Op {
        self.ok = (status, Some(schema));
        self
    }
    fn no_content(mut self) -> Op {
        self.ok = (204, None);
        self
    }
    fn errors(mut self, errors: &'static [u16]) -> Op {
        self.errors = errors;
        self
    }
    fn query(mut self, name: &str, schema: Value, description: &str) -> Op {
        self.query.push(json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description }));
        self
    }
    fn required_query(mut self, name: &str, schema: Value, description: &str) -> Op {
        self.query.push(json!({ "name": name, "in": "query", "required": true, "schema": schema, "description": description }));
        self
    }
    /// A paged list of `item` (see crate::paging).
    fn paged(mut self, item: &str, listing: &Listing) -> Op {
        self.ok = (200, Some(page_of(item)));
        self.query.extend(paging_parameters(listing));
        self
    }
}

fn reference(schema: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{schema}") })
}

fn page_of(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["content", "total", "size"],
        "properties": {
            "content": { "type": "array", "items": reference(item) },
            "total": { "type": "integer", "format": "int64", "minimum": 0, "description": "matching items in all pages" },
            "size": { "type": "integer", "minimum": 0, "description": "items in this page" }
        }
    })
}

fn paging_parameters(listing: &Listing) -> Vec<Value> {
    vec![
        json!({ "name": "offset", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 0, "maximum": i32::MAX, "default": 0 },
                "description": "items to skip" }),
        json!({ "name": "limit", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 0, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT },
                "description": format!("items per page (above {MAX_LIMIT}: 400)") }),
        json!({ "name": "sort", "in": "query", "required": false,
                "schema": { "type": "string", "pattern": sort_pattern(listing) },
                "description": format!("field:ASC or field:DESC, comma-separated; fields: {}", listing.sort_fields().join(", ")) }),
        json!({ "name": "q", "in": "query", "required": false, "schema": { "type": "string" },
                "description": format!(
                    "filter, FIQL subset: field==value (* wildcard, case-insensitive), field!=value, \
                     =lt= =le= =gt= =ge= on numbers; ';' and, ',' or. Fields: {}",
                    listing.filter_fields().join(", ")) }),
    ]
}

fn sort_pattern(listing: &Listing) -> String {
    let field = format!(
        "({})(:(ASC|DESC|asc|desc))?",
        listing.sort_fields().join("|")
    );
    format!("^{field}(,{field})*$")
}

/// Every route keel-server serves.
fn operations_table() -> Vec<Op> {
    use Who::*;
    let force = json!({ "type": "boolean", "default": false });
    vec![
        op("get", "/rest/v1/openapi.json", Anyone, "This document")
            .ok_schema(200, json!({ "type": "object" })),
        op("get", "/rest/v1/whoami", Viewer, "Role of the presented token").ok(200, "Whoami"),
        op("post", "/rest/v1/tenants", Admin, "Create a tenant")
            .body("NewTenant")
            .ok(201, "NewTenantResult")
            .errors(&[409, 413]),
        op("get", "/rest/v1/tenants", Admin, "List tenants")
            .paged("Tenant", &store::TENANT_LISTING),
        op("put", "/rest/v1/tenants/{name}/gatewaytoken", Admin, "Set or generate the tenant's DDI gateway token")
            .optional_body("TokenValue")
            .ok(200, "GatewayToken")
            .errors(&[413]),
        op("delete", "/rest/v1/tenants/{name}/gatewaytoken", Admin, "Disable the tenant's gateway token")
            .no_content(),
        op("post", "/rest/v1/tokens", Admin, "Create a management API token (shown once)")
            .body("NewToken")
            .ok(201, "CreatedToken")
            .errors(&[413]),
        op("get", "/rest/v1/tokens", Admin, "List management API tokens (no secrets)")
            .paged("ApiToken", &store::TOKEN_LISTING),
        op("delete", "/rest/v1/tokens/{id}", Admin, "Revoke a management API token").no_content(),
        op("get", "/rest/v1/audit", Admin, "The audit log of the tenant acted on, newest first (docs/security.md)")
            .ok(200, "AuditPage")
            .query("offset", json!({ "type": "integer", "minimum": 0, "default": 0 }), "records to skip")
            .query("limit", json!({ "type": "integer", "minimum": 1, "maximum": 500, "default": 50 }), "records per page")
            .query("actor", string(), "only this actor")
            .query("action", string(), "only actions starting with this")
            .query("since", integer(), "only records at or after (ms since the epoch)")
            .query("until", integer(), "only records before (ms since the epoch)")
            .query("failed", json!({ "type": "boolean", "default": false }), "only refusals and failures (status 400 or above)")
            .query("all", json!({ "type": "boolean", "default": false }), "every tenant's records and those of no tenant (cross-tenant tokens only)"),
        op("get", "/metrics", Viewer, "Prometheus metrics: HTTP requests and latency by route class, DDI polls, artifact bytes served, actions and rollouts by status (cross-tenant tokens only; docs/management-api.md)")
            .ok_schema(200, string()),
        op("post", "/rest/v1/softwaremodules", Operator, "Create a software module")
            .body("NewModule")
            .ok(201, "SoftwareModule")
            .errors(&[409, 413]),
        op("get", "/rest/v1/softwaremodules", Viewer, "List software modules")
            .paged("SoftwareModule", &store::MODULE_LISTING),
        op("get", "/rest/v1/softwaremodules/{id}", Viewer, "A software module with its artifacts")
            .ok(200, "SoftwareModule"),
        op("post", "/rest/v1/softwaremodules/{id}/artifacts", Operator,
           "Upload an artifact (raw body, streamed, hashed on the way in; a .swu is classified full / delta / chunked by its sw-description)")
            .body("binary")
            .required_query("filename", json!({ "type": "string", "minLength": 1, "maxLength": 128 }), "the file name devices see; no '/'")
            .ok(201, "Artifact")
            .errors(&[409, 413, 503]),
        op("get", "/rest/v1/softwaremodules/{id}/artifacts", Viewer, "List a module's artifacts")
            .paged("Artifact", &store::ARTIFACT_LISTING),
        op("post", "/rest/v1/distributionsets", Operator, "Create a distribution set from software modules")
            .body("NewDistributionSet")
            .ok(201, "DistributionSet")
            .errors(&[409, 413]),
        op("get", "/rest/v1/distributionsets", Viewer, "List distribution sets (without modules)")
            .paged("DistributionSet", &store::SET_LISTING),
        op("get", "/rest/v1/distributionsets/{id}", Viewer, "A distribution set with modules and artifacts")
            .ok(200, "DistributionSet"),
        op("post", "/rest/v1/distributionsets/{id}/assignedTargets", Operator, "Assign a set to devices (list and/or tag), in one transaction")
            .body("AssignToMany")
            .ok(201, "AssignResult")
            .errors(&[413]),
        op("post", "/rest/v1/targets", Operator, "Pre-register a device; the response carries its token once")
            .body("NewTarget")
            .ok(201, "Target")
            .errors(&[409, 413]),
        op("get", "/rest/v1/targets", Viewer, "List devices")
            .paged("Target", &store::TARGET_LISTING)
            .query("tag", json!({ "type": "string" }), "only devices with exactly this tag"),
        op("get", "/rest/v1/targets/{controllerId}", Viewer, "A device: tags, attributes, update status")
            .ok(200, "Target"),
        op("delete", "/rest/v1/targets/{controllerId}", Operator, "Delete a device and its history")
            .no_content(),
        op("put", "/rest/v1/targets/{controllerId}/tags", Operator, "Replace a device's tags")
            .body("Tags")
            .ok(200, "Target")
            .errors(&[413]),
        op("post", "/rest/v1/targets/{controllerId}/token", Operator, "Set or regenerate a device's TargetToken")
            .optional_body("TokenValue")
            .ok(200, "TargetToken")
            .errors(&[413]),
        op("post", "/rest/v1/targets/{controllerId}/requestAttributes", Operator, "Ask the device to send its attributes again")
            .no_content(),
        op("post", "/rest/v1/targets/{controllerId}/assignedDS", Operator, "Assign a distribution set to one device")
            .body("AssignToTarget")
            .ok(201, "Action")
            .errors(&[413]),
        op("get", "/rest/v1/targets/{controllerId}/actions", Viewer, "A device's actions")
            .paged("Action", &store::ACTION_LISTING),
        op("get", "/rest/v1/targets/{controllerId}/actions/{actionId}", Viewer, "One action with its status history")
            .ok(200, "Action"),
        op("delete", "/rest/v1/targets/{controllerId}/actions/{actionId}", Operator,
           "Cancel an action: canceling until the device confirms, or canceled at once with force=true")
            .query("force", force, "close the action at once without the device's confirmation")
            .ok(200, "Action")
            .errors(&[409]),
        op("post", "/rest/v1/rollouts", Operator, "Create a rollout in groups with thresholds")
            .body("NewRollout")
            .ok(201, "Rollout")
            .errors(&[413]),
        op("get", "/rest/v1/rollouts", Viewer, "List rollouts (without groups; see /rollouts/{id})")
            .paged("Rollout", &store::ROLLOUT_LISTING),
        op("get", "/rest/v1/rollouts/{id}", Viewer, "A rollout with per-group counts").ok(200, "Rollout"),
        op("post", "/rest/v1/rollouts/{id}/start", Operator, "Start a ready rollout")
            .ok(200, "Rollout")
            .errors(&[409]),
        op("post", "/rest/v1/rollouts/{id}/pause", Operator, "Pause: no further groups start")
            .ok(200, "Rollout")
            .errors(&[409]),
        op("post", "/rest/v1/rollouts/{id}/resume", Operator, "Resume a paused or halted rollout")
            .ok(200, "Rollout")
            .errors(&[409]),
        op("post", "/rest/v1/rollouts/{id}/cancel", Operator, "Cancel: unstarted groups never start, open actions are canceled")
            .ok(200, "Rollout")
            .errors(&[409]),
        op("get", "/{tenant}/controller/v1/{controllerId}", Device, "DDI poll")
            .ok(200, "DdiControllerBase"),
        op("get", "/{tenant}/controller/v1/{controllerId}/deploymentBase/{actionId}", Device, "DDI deployment")
            .query("c", json!({ "type": "string" }), "hawkBit's cache-busting hash from the poll's link (ignored)")
            .query("actionHistory", json!({ "type": "integer", "format": "int64" }), "include up to this many status messages (-1: all)")
            .ok(200, "DdiDeploymentBase"),
        op("post", "/{tenant}/controller/v1/{controllerId}/deploymentBase/{actionId}/feedback", Device, "DDI feedback")
            .body("DdiFeedback")
            .errors(&[410, 413]),
        op("get", "/{tenant}/controller/v1/{controllerId}/cancelAction/{actionId}", Device, "DDI cancel request")
            .ok(200, "DdiCancel"),
        op("post", "/{tenant}/controller/v1/{controllerId}/cancelAction/{actionId}/feedback", Device, "DDI cancel feedback")
            .body("DdiFeedback")
            .errors(&[405, 410, 413]),
        op("put", "/{tenant}/controller/v1/{controllerId}/configData", Device, "DDI device attributes")
            .body("DdiConfigData")
            .errors(&[413]),
        op("get", "/{tenant}/controller/v1/{controllerId}/installedBase/{actionId}", Device, "DDI installed deployment")
            .query("actionHistory", json!({ "type": "integer", "format": "int64" }), "include up to this many status messages (-1: all)")
            .ok(200, "DdiDeploymentBase"),
        op("get", "/{tenant}/controller/v1/{controllerId}/softwaremodules/{moduleId}/artifacts", Device, "DDI artifact list")
            .ok_schema(200, json!({ "type": "array", "items": reference("DdiArtifact") })),
        op("get", "/{tenant}/controller/v1/{controllerId}/softwaremodules/{moduleId}/artifacts/{fileName}", Device,
           "DDI artifact download (Range supported; {fileName}.MD5SUM gives the MD5 line; with pre-signed object storage a 302 to it)")
            .ok_schema(200, json!({ "type": "string", "format": "binary" }))
            .errors(&[206, 302, 412, 416]),
        op("get", "/{tenant}/controller/v1/{controllerId}/tuf/{file}", DeviceTuf,
           "TUF metadata of the tenant's repository (root.json, N.root.json, timestamp.json, N.snapshot.json, N.targets.json, bins); docs/tuf.md")
            .ok_schema(200, json!({ "type": "object" })),
    ]
}

fn string() -> Value {
    json!({ "type": "string" })
}
fn integer() -> Value {
    json!({ "type": "integer", "format": "int64" })
}
fn nullable_integer() -> Value {
    json!({ "type": "integer", "format": "int64", "nullable": true })
}
fn nullable_string() -> Value {
    json!({ "type": "string", "nullable": true })
}
fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}
fn boolean() -> Value {
    json!({ "type": "boolean" })
}
/// A response object: these fields always present.
fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties })
}
/// A request body of the management API: unknown fields are refused with 400.
fn strict(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties, "additionalProperties": false })
}

fn schemas() -> Value {
    let action_type =
        json!({ "type": "string", "enum": ["soft", "forced", "timeforced", "downloadonly"] });
    let role = json!({ "type": "string", "enum": ["viewer", "operator", "admin"] });
    let maintenance = strict(
        &["schedule", "duration", "timezone"],
        json!({
            "schedule": { "type": "string", "description": "Quartz cron, seconds first: 0 0 3 ? * *" },
            "duration": { "type": "string", "description": "HH:MM:SS" },
            "timezone": { "type": "string", "description": "+HH:MM, -HH:MM or Z" }
        }),
    );
    let action_status = json!({ "type": "string", "enum": ["running", "download", "downloaded", "warning", "canceling", "finished", "error", "canceled"] });
    let counts = object(
        &[
            "total",
            "scheduled",
            "running",
            "finished",
            "error",
            "canceled",
        ],
        json!({ "total": integer(), "scheduled": integer(), "running": integer(), "finished": integer(), "error": integer(), "canceled": integer() }),
    );
    let link = object(&["href"], json!({ "href": string() }));
    let links = json!({ "type": "object", "additionalProperties": link });
    let history = object(
        &["status", "messages"],
        json!({ "status": string(), "messages": strings() }),
    );
    let ddi_chunk = object(
        &["part", "version", "name", "artifacts"],
        json!({ "part": string(), "version": string(), "name": string(), "artifacts": { "type": "array", "items": reference("DdiArtifact") } }),
    );
    let handling = json!({ "type": "string", "enum": ["skip", "attempt", "forced"] });
    json!({
        "Error": object(&["error", "message"], json!({
            "error": { "type": "string", "enum": ["bad_request", "unauthorized", "forbidden", "not_found", "method_not_allowed", "conflict", "gone", "precondition_failed", "payload_too_large", "range_not_satisfiable", "too_many_requests", "internal", "unavailable"] },
            "message": string()
        })),
        "Whoami": object(&["name", "role", "tenant", "crossTenant"], json!({
            "name": string(), "role": role,
            "tenant": { "type": "string", "nullable": true, "description": "the tenant the token is bound to (or X-Keel-Tenant's); null for a cross-tenant token without the header" },
            "crossTenant": { "type": "boolean" }
        })),
        "AuditRecord": object(&["id", "at", "tenantId", "actor", "action", "object", "status", "address", "detail"], json!({
            "id": integer(), "at": integer(), "tenantId": nullable_integer(), "actor": string(), "action": string(),
            "object": string(), "status": integer(),
            "address": { "type": "string", "nullable": true }, "detail": { "type": "string", "nullable": true }
        })),
        "AuditPage": object(&["content", "total", "size", "offset"], json!({
            "content": { "type": "array", "items": reference("AuditRecord") },
            "total": integer(), "size": integer(), "offset": integer()
        })),
        "NewTenant": strict(&["name"], json!({ "name": { "type": "string", "minLength": 1, "maxLength": 128 } })),
        "NewTenantResult": object(&["id", "name"], json!({ "id": integer(), "name": string() })),
        "Tenant": object(&["id", "name", "gatewayToken"], json!({ "id": integer(), "name": string(), "gatewayToken": { "type": "boolean", "description": "whether a gateway token is set" } })),
        "TokenValue": strict(&[], json!({ "token": { "type": "string", "minLength": 8, "maxLength": 128, "description": "printable ASCII; generated when left out" } })),
        "GatewayToken": object(&["tenant", "gatewayToken"], json!({ "tenant": string(), "gatewayToken": string() })),
        "NewToken": strict(&["name", "role"], json!({ "name": { "type": "string", "minLength": 1, "maxLength": 128 }, "role": role })),
        "CreatedToken": object(&["id", "name", "role", "tenant", "token"], json!({ "id": integer(), "name": string(), "role": role, "tenant": string(), "token": string() })),
        "ApiToken": object(&["id", "name", "role", "createdAt"], json!({ "id": integer(), "name": string(), "role": role, "createdAt": integer() })),
        "NewModule": strict(&["name", "version"], json!({ "name": string(), "version": string(), "type": { "type": "string", "default": "os" } })),
        "SoftwareModule": object(&["id", "type", "name", "version", "createdAt"], json!({
            "id": integer(), "type": string(), "name": string(), "version": string(), "createdAt": integer(),
            "artifacts": { "type": "array", "items": reference("Artifact"), "description": "only on GET /softwaremodules/{id} and in distribution sets" }
        })),
        "Artifact": object(&["id", "moduleId", "filename", "sha256", "sha1", "md5", "size", "createdAt", "variant", "deltaSources", "packs", "zstdFrames"], json!({
            "id": integer(), "moduleId": integer(), "filename": string(), "sha256": string(), "sha1": string(), "md5": string(), "size": integer(), "createdAt": integer(),
            "variant": { "type": "string", "enum": ["full", "delta", "chunked"], "nullable": true, "description": "bundle variant read from the sw-description on upload (null: not a .swu); see docs/ddi.md" },
            "deltaSources": strings(), "packs": strings(), "zstdFrames": strings()
        })),
        "NewDistributionSet": strict(&["name", "version", "modules"], json!({ "name": string(), "version": string(), "modules": { "type": "array", "items": integer(), "minItems": 1 } })),
        "DistributionSet": object(&["id", "name", "version", "createdAt"], json!({
            "id": integer(), "name": string(), "version": string(), "createdAt": integer(),
            "modules": { "type": "array", "items": reference("SoftwareModule"), "description": "not in lists" }
        })),
        "AssignToMany": strict(&[], json!({ "targets": strings(), "tag": string(), "type": action_type, "forcetime": integer(), "maintenanceWindow": maintenance })),
        "AssignResult": object(&["assigned", "actions"], json!({
            "assigned": integer(),
            "actions": { "type": "array", "items": object(&["controllerId", "actionId"], json!({ "controllerId": string(), "actionId": integer() })) }
        })),
        "NewTarget": strict(&["controllerId"], json!({ "controllerId": string(), "name": string(), "securityToken": { "type": "string", "minLength": 8, "maxLength": 128 }, "tags": strings() })),
        "Target": object(&["controllerId", "name", "tags", "attributes", "updateStatus", "installedActionId", "installedDistributionSetId", "lastPollAt", "address", "createdAt"], json!({
            "controllerId": string(), "name": string(), "tags": strings(),
            "attributes": { "type": "object", "additionalProperties": string(), "description": "sent by the device as configData" },
            "updateStatus": { "type": "string", "enum": ["unknown", "registered", "pending", "in_sync", "error"] },
            "installedActionId": nullable_integer(),
            "installedDistributionSetId": nullable_integer(),
            "lastPollAt": { "type": "integer", "format": "int64", "nullable": true, "description": "ms since the epoch, written in batches" },
            "address": nullable_string(),
            "createdAt": integer(),
            "securityToken": { "type": "string", "description": "only in the answer to POST /targets" }
        })),
        "TargetToken": object(&["controllerId", "securityToken"], json!({ "controllerId": string(), "securityToken": string() })),
        "Tags": strict(&["tags"], json!({ "tags": strings() })),
        "AssignToTarget": strict(&["id"], json!({ "id": integer(), "type": action_type, "forcetime": integer(), "maintenanceWindow": maintenance })),
        "ActionStatus": object(&["id", "status", "messages", "code", "progressCnt", "progressOf", "reportedAt", "createdAt"], json!({
            "id": integer(), "status": string(), "messages": strings(), "code": nullable_integer(),
            "progressCnt": nullable_integer(), "progressOf": nullable_integer(), "reportedAt": integer(), "createdAt": integer()
        })),
        "Action": object(&["id", "distributionSetId", "rolloutId", "rolloutGroupId", "type", "forcetime", "status", "active", "createdAt", "updatedAt"], json!({
            "id": integer(), "distributionSetId": integer(), "rolloutId": nullable_integer(), "rolloutGroupId": nullable_integer(),
            "type": action_type, "forcetime": nullable_integer(), "status": action_status, "active": boolean(),
            "createdAt": integer(), "updatedAt": integer(),
            "history": { "type": "array", "items": reference("ActionStatus"), "description": "only on GET .../actions/{actionId}" }
        })),
        "NewRollout": strict(&["name", "distributionSetId"], json!({
            "name": string(), "distributionSetId": integer(),
            "type": { "type": "string", "enum": ["soft", "forced", "downloadonly"] },
            "successThreshold": { "type": "integer", "minimum": 0, "maximum": 100, "default": 100 },
            "errorThreshold": { "type": "integer", "minimum": 0, "maximum": 100, "default": 0 },
            "groups": { "type": "array", "items": strict(&[], json!({ "name": string(), "targets": strings(), "tag": string() })) },
            "amountGroups": { "type": "integer", "minimum": 1, "maximum": 500 },
            "targets": strings(), "tag": string()
        })),
        "RolloutGroup": object(&["id", "position", "name", "status", "counts"], json!({
            "id": integer(), "position": integer(), "name": string(),
            "status": { "type": "string", "enum": ["scheduled", "running", "finished", "error", "canceled"] },
            "counts": counts
        })),
        "Rollout": object(&["id", "name", "distributionSetId", "type", "status", "statusReason", "successThreshold", "errorThreshold", "createdAt", "updatedAt"], json!({
            "id": integer(), "name": string(), "distributionSetId": integer(), "type": action_type,
            "status": { "type": "string", "enum": ["ready", "running", "paused", "halted", "finished", "canceled"] },
            "statusReason": nullable_string(), "successThreshold": integer(), "errorThreshold": integer(),
            "createdAt": integer(), "updatedAt": integer(),
            "groups": { "type": "array", "items": reference("RolloutGroup"), "description": "not in lists" },
            "counts": counts
        })),
        "DdiControllerBase": object(&["config", "_links"], json!({
            "config": object(&["polling"], json!({ "polling": object(&["sleep"], json!({ "sleep": { "type": "string", "description": "HH:MM:SS" } })) })),
            "_links": links
        })),
        "DdiArtifact": object(&["filename", "hashes", "size", "_links"], json!({
            "filename": string(),
            "hashes": object(&["sha1", "md5", "sha256"], json!({ "sha1": string(), "md5": string(), "sha256": string() })),
            "size": integer(),
            "_links": links
        })),
        "DdiDeploymentBase": object(&["id"], json!({
            "id": string(),
            "deployment": object(&["download", "update", "chunks"], json!({
                "download": handling, "update": handling,
                "maintenanceWindow": { "type": "string", "enum": ["available", "unavailable"] },
                "chunks": { "type": "array", "items": ddi_chunk }
            })),
            "actionHistory": history
        })),
        "DdiCancel": object(&["id", "cancelAction"], json!({ "id": string(), "cancelAction": object(&["stopId"], json!({ "stopId": string() })) })),
        "DdiFeedback": object(&["status"], json!({
            "timestamp": string(),
            "status": object(&["execution", "result"], json!({
                "execution": { "type": "string", "enum": ["closed", "proceeding", "canceled", "scheduled", "rejected", "resumed", "download", "downloaded"] },
                "result": object(&["finished"], json!({
                    "finished": { "type": "string", "enum": ["success", "failure", "none"] },
                    "progress": object(&[], json!({ "cnt": integer(), "of": integer() }))
                })),
                "code": integer(),
                "details": strings()
            }))
        })),
        "DdiConfigData": object(&["data"], json!({
            "mode": { "type": "string", "enum": ["merge", "replace", "remove"], "default": "merge" },
            "data": {
                "type": "object",
                "description": "attribute values: strings; numbers and booleans are accepted and stored as their text (1, true), null as the empty string",
                "additionalProperties": { "anyOf": [ { "type": "string", "nullable": true, "maxLength": 1024 }, { "type": "number" }, { "type": "boolean" } ] }
            }
        })),
    })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": reference("Error") } } })
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "Bad request: the message names the field or parameter",
        401 => "Missing or wrong token",
        403 => "Role too low",
        404 => "Not found (also: an unknown tenant)",
        405 => "Not allowed in the action's state",
        409 => "Conflict: exists already, or not allowed in the current state",
        410 => "The action is closed",
        412 => "If-Match does not match",
        413 => "Body too large",
        416 => "Range not satisfiable",
        429 => "Too many failed attempts; retry after Retry-After seconds",
        503 => "Artifact storage unavailable; retry after Retry-After seconds",
        _ => "Error",
    }
}

fn path_parameter(name: &str) -> Value {
    let schema = match name {
        "id" | "actionId" | "moduleId" => integer(),
        _ => json!({ "type": "string", "minLength": 1 }),
    };
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

/// The OpenAPI 3.0 document served at `GET /rest/v1/openapi.json`: every route of the
/// management and DDI APIs with its parameters, bodies and status codes.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in operations_table() {
        let mut parameters: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(path_parameter)
            .collect();
        parameters.extend(op.query.iter().cloned());
        let management = op.path.starts_with("/rest/");
        if management && op.who != Who::Anyone {
            parameters.push(json!({ "name": "X-Keel-Tenant", "in": "header", "required": false,
                "schema": { "type": "string", "default": "default" }, "description": "tenant to act on" }));
        }
        let mut responses = Map::new();
        let (status, schema) = &op.ok;
        let mut ok = json!({ "description": match *status { 201 => "Created", 204 => "No content", _ => "OK" } });
        if let Some(schema) = schema {
            ok["content"] = if op.path.ends_with("/artifacts/{fileName}") {
                // The file, or with .MD5SUM its md5sum line.
                json!({ "application/octet-stream": { "schema": schema }, "text/plain": { "schema": string() } })
            } else if op.path == "/metrics" {
                json!({ "application/openmetrics-text": { "schema": schema } })
            } else if op.who == Who::Device {
                json!({ "application/hal+json": { "schema": schema } })
            } else {
                json!({ "application/json": { "schema": schema } })
            };
        }
        responses.insert(status.to_string(), ok);
        let mut errors: Vec<u16> = match op.who {
            Who::Anyone => Vec::new(),
            Who::Viewer | Who::Operator | Who::Admin => vec![400, 401, 403, 404, 429],
            Who::Device | Who::DeviceTuf => vec![400, 401, 404, 429],
        };
        errors.extend(op.errors);
        errors.sort_unstable();
        errors.dedup();
        for status in errors {
            let response = match status {
                206 => {
                    json!({ "description": "Partial content (Range)", "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } })
                }
                302 => json!({ "description": "Redirect to a pre-signed object storage URL" }),
                _ => error_response(error_description(status)),
            };
            responses.insert(status.to_string(), response);
        }
        let mut operation = json!({
            "operationId": operation_id(op.method, op.path),
            "summary": op.summary,
            "tags": [if management || op.path == "/metrics" { "management" } else { "ddi" }],
            "parameters": parameters,
            "responses": responses,
        });
        match op.who {
            Who::Device | Who::DeviceTuf => {
                operation["security"] = json!([{ "TargetToken": [] }, { "GatewayToken": [] }])
            }
            Who::Anyone => operation["security"] = json!([]),
            role => {
                operation["security"] = json!([{ "bearer": [] }]);
                operation["x-keel-role"] = json!(match role {
                    Who::Viewer => "viewer",
                    Who::Operator => "operator",
                    _ => "admin",
                });
            }
        }
        match op.request {
            Some(("binary", _)) => {
                operation["requestBody"] = json!({ "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } });
            }
            Some((schema, optional)) => {
                operation["requestBody"] = json!({ "required": !optional, "content": { "application/json": { "schema": reference(schema) } } });
            }
            None => {}
        }
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "keel-server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Management API (/rest/v1, Bearer token with role viewer/operator/admin; tenant via X-Keel-Tenant header, default 'default'; lists paged with offset/limit/sort/q, answers {content, total, size}; unknown body fields and query parameters are refused with 400) and hawkBit DDI device API (/{tenant}/controller/v1)."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "TargetToken": { "type": "apiKey", "in": "header", "name": "Authorization", "description": "TargetToken <token>" },
                "GatewayToken": { "type": "apiKey", "in": "header", "name": "Authorization", "description": "GatewayToken <token>" }
            }
        }
    })
}

/// `getTargetsControllerIdActions`-style ids, unique per method and path.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_string();
    for part in path.split(['/', '.', '-']).filter(|p| !p.is_empty()) {
        let part = part.trim_start_matches('{').trim_end_matches('}');
        if matches!(part, "rest" | "v1") {
            continue;
        }
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.extend(chars);
        }
    }
    id
}

/// `(METHOD, path)` of every documented operation, for tests that check the router serves them all.
pub fn operations() -> Vec<(String, String)> {
    operations_table()
        .iter()
        .map(|op| (op.method.to_uppercase(), op.path.to_string()))
        .collect()
}
