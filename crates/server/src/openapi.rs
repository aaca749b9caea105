//! The OpenAPI 3.0 document served at `/rest/v1/openapi.json`, built from one table of operations
//! (method, path, role, summary, request schema, response schema).

use serde_json::{json, Map, Value};

struct Op {
    method: &'static str,
    path: &'static str,
    role: Option<&'static str>,
    summary: &'static str,
    request: Option<&'static str>,
    response: Option<&'static str>,
}

const fn op(
    method: &'static str,
    path: &'static str,
    role: Option<&'static str>,
    summary: &'static str,
    request: Option<&'static str>,
    response: Option<&'static str>,
) -> Op {
    Op {
        method,
        path,
        role,
        summary,
        request,
        response,
    }
}

const V: Option<&str> = Some("viewer");
const O: Option<&str> = Some("operator");
const A: Option<&str> = Some("admin");
const DEVICE: Option<&str> = Some("device");

/// Every route keel-server serves.
const OPERATIONS: &[Op] = &[
    op(
        "get",
        "/rest/v1/openapi.json",
        None,
        "This document",
        None,
        None,
    ),
    op(
        "get",
        "/rest/v1/whoami",
        V,
        "Role of the presented token",
        None,
        None,
    ),
    op(
        "post",
        "/rest/v1/tenants",
        A,
        "Create a tenant",
        Some("NewTenant"),
        None,
    ),
    op("get", "/rest/v1/tenants", A, "List tenants", None, None),
    op(
        "put",
        "/rest/v1/tenants/{name}/gatewaytoken",
        A,
        "Set or generate the tenant's DDI gateway token",
        Some("TokenValue"),
        None,
    ),
    op(
        "delete",
        "/rest/v1/tenants/{name}/gatewaytoken",
        A,
        "Disable the tenant's gateway token",
        None,
        None,
    ),
    op(
        "post",
        "/rest/v1/tokens",
        A,
        "Create a management API token",
        Some("NewToken"),
        None,
    ),
    op(
        "get",
        "/rest/v1/tokens",
        A,
        "List management API tokens (no secrets)",
        None,
        None,
    ),
    op(
        "delete",
        "/rest/v1/tokens/{id}",
        A,
        "Revoke a management API token",
        None,
        None,
    ),
    op(
        "get",
        "/rest/v1/audit",
        A,
        "The audit log of the tenant acted on, newest first (offset, limit; filters actor, action prefix, since, until, failed; all=true for every tenant, cross-tenant tokens only)",
        None,
        None,
    ),
    op(
        "post",
        "/rest/v1/softwaremodules",
        O,
        "Create a software module",
        Some("NewModule"),
        Some("SoftwareModule"),
    ),
    op(
        "get",
        "/rest/v1/softwaremodules",
        V,
        "List software modules",
        None,
        None,
    ),
    op(
        "get",
        "/rest/v1/softwaremodules/{id}",
        V,
        "A software module with its artifacts",
        None,
        Some("SoftwareModule"),
    ),
    op(
        "post",
        "/rest/v1/softwaremodules/{id}/artifacts",
        O,
        "Upload an artifact (raw body, streamed, hashed on the way in; a .swu is classified full / delta / chunked by its sw-description); query filename",
        Some("binary"),
        Some("Artifact"),
    ),
    op(
        "get",
        "/rest/v1/softwaremodules/{id}/artifacts",
        V,
        "List a module's artifacts",
        None,
        None,
    ),
    op(
        "post",
        "/rest/v1/distributionsets",
        O,
        "Create a distribution set from software modules",
        Some("NewDistributionSet"),
        None,
    ),
    op(
        "get",
        "/rest/v1/distributionsets",
        V,
        "List distribution sets",
        None,
        None,
    ),
    op(
        "get",
        "/rest/v1/distributionsets/{id}",
        V,
        "A distribution set with modules and artifacts",
        None,
        None,
    ),
    op(
        "post",
        "/rest/v1/distributionsets/{id}/assignedTargets",
        O,
        "Assign a set to devices (list and/or tag)",
        Some("AssignToMany"),
        None,
    ),
    op(
        "post",
        "/rest/v1/targets",
        O,
        "Pre-register a device; the response carries its token once",
        Some("NewTarget"),
        Some("Target"),
    ),
    op(
        "get",
        "/rest/v1/targets",
        V,
        "List devices (query tag)",
        None,
        None,
    ),
    op(
        "get",
        "/rest/v1/targets/{controllerId}",
        V,
        "A device: tags, attributes, update status",
        None,
        Some("Target"),
    ),
    op(
        "delete",
        "/rest/v1/targets/{controllerId}",
        O,
        "Delete a device and its history",
        None,
        None,
    ),
    op(
        "put",
        "/rest/v1/targets/{controllerId}/tags",
        O,
        "Replace a device's tags",
        Some("Tags"),
        Some("Target"),
    ),
    op(
        "post",
        "/rest/v1/targets/{controllerId}/token",
        O,
        "Set or regenerate a device's TargetToken",
        Some("TokenValue"),
        None,
    ),
    op(
        "post",
        "/rest/v1/targets/{controllerId}/requestAttributes",
        O,
        "Ask the device to send its attributes again",
        None,
        None,
    ),
    op(
        "post",
        "/rest/v1/targets/{controllerId}/assignedDS",
        O,
        "Assign a distribution set to one device",
        Some("AssignToTarget"),
        Some("Action"),
    ),
    op(
        "get",
        "/rest/v1/targets/{controllerId}/actions",
        V,
        "A device's actions",
        None,
        None,
    ),
    op(
        "get",
        "/rest/v1/targets/{controllerId}/actions/{actionId}",
        V,
        "One action with its status history",
        None,
        Some("Action"),
    ),
    op(
        "delete",
        "/rest/v1/targets/{controllerId}/actions/{actionId}",
        O,
        "Cancel an action (query force=true closes it at once)",
        None,
        Some("Action"),
    ),
    op(
        "post",
        "/rest/v1/rollouts",
        O,
        "Create a rollout in groups with thresholds",
        Some("NewRollout"),
        Some("Rollout"),
    ),
    op("get", "/rest/v1/rollouts", V, "List rollouts", None, None),
    op(
        "get",
        "/rest/v1/rollouts/{id}",
        V,
        "A rollout with per-group counts",
        None,
        Some("Rollout"),
    ),
    op(
        "post",
        "/rest/v1/rollouts/{id}/start",
        O,
        "Start a ready rollout",
        None,
        Some("Rollout"),
    ),
    op(
        "post",
        "/rest/v1/rollouts/{id}/pause",
        O,
        "Pause: no further groups start",
        None,
        Some("Rollout"),
    ),
    op(
        "post",
        "/rest/v1/rollouts/{id}/resume",
        O,
        "Resume a paused or halted rollout",
        None,
        Some("Rollout"),
    ),
    op(
        "post",
        "/rest/v1/rollouts/{id}/cancel",
        O,
        "Cancel: unstarted groups never start, open actions are canceled",
        None,
        Some("Rollout"),
    ),
    op(
        "get",
        "/{tenant}/controller/v1/{controllerId}",
        DEVICE,
        "DDI poll",
        None,
        None,
    ),
    op(
        "get",
        "/{tenant}/controller/v1/{controllerId}/deploymentBase/{actionId}",
        DEVICE,
        "DDI deployment",
        None,
        None,
    ),
    op(
        "post",
        "/{tenant}/controller/v1/{controllerId}/deploymentBase/{actionId}/feedback",
        DEVICE,
        "DDI feedback",
        Some("DdiFeedback"),
        None,
    ),
    op(
        "get",
        "/{tenant}/controller/v1/{controllerId}/cancelAction/{actionId}",
        DEVICE,
        "DDI cancel request",
        None,
        None,
    ),
    op(
        "post",
        "/{tenant}/controller/v1/{controllerId}/cancelAction/{actionId}/feedback",
        DEVICE,
        "DDI cancel feedback",
        Some("DdiFeedback"),
        None,
    ),
    op(
        "put",
        "/{tenant}/controller/v1/{controllerId}/configData",
        DEVICE,
        "DDI device attributes",
        Some("DdiConfigData"),
        None,
    ),
    op(
        "get",
        "/{tenant}/controller/v1/{controllerId}/installedBase/{actionId}",
        DEVICE,
        "DDI installed deployment",
        None,
        None,
    ),
    op(
        "get",
        "/{tenant}/controller/v1/{controllerId}/softwaremodules/{moduleId}/artifacts",
        DEVICE,
        "DDI artifact list",
        None,
        None,
    ),
    op(
        "get",
        "/{tenant}/controller/v1/{controllerId}/softwaremodules/{moduleId}/artifacts/{fileName}",
        DEVICE,
        "DDI artifact download (Range supported; {fileName}.MD5SUM gives the MD5 line)",
        None,
        None,
    ),
];

fn string() -> Value {
    json!({ "type": "string" })
}
fn integer() -> Value {
    json!({ "type": "integer", "format": "int64" })
}
fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}
fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties })
}

fn schemas() -> Value {
    let action_type =
        json!({ "type": "string", "enum": ["soft", "forced", "timeforced", "downloadonly"] });
    let maintenance = object(
        &["schedule", "duration", "timezone"],
        json!({ "schedule": string(), "duration": string(), "timezone": string() }),
    );
    json!({
        "Error": object(&["error", "message"], json!({ "error": string(), "message": string() })),
        "NewTenant": object(&["name"], json!({ "name": string() })),
        "TokenValue": object(&[], json!({ "token": string() })),
        "NewToken": object(&["name", "role"], json!({ "name": string(), "role": { "type": "string", "enum": ["viewer", "operator", "admin"] } })),
        "NewModule": object(&["name", "version"], json!({ "name": string(), "version": string(), "type": string() })),
        "SoftwareModule": object(&[], json!({ "id": integer(), "type": string(), "name": string(), "version": string(), "createdAt": integer() })),
        "Artifact": object(&[], json!({ "id": integer(), "moduleId": integer(), "filename": string(), "sha256": string(), "sha1": string(), "md5": string(), "size": integer(), "variant": { "type": "string", "enum": ["full", "delta", "chunked"], "nullable": true, "description": "bundle variant read from the sw-description on upload (null: not a .swu); see docs/ddi.md" }, "deltaSources": strings(), "packs": strings(), "zstdFrames": strings() })),
        "NewDistributionSet": object(&["name", "version", "modules"], json!({ "name": string(), "version": string(), "modules": { "type": "array", "items": integer() } })),
        "NewTarget": object(&["controllerId"], json!({ "controllerId": string(), "name": string(), "securityToken": string(), "tags": strings() })),
        "Target": object(&[], json!({ "controllerId": string(), "name": string(), "tags": strings(), "attributes": { "type": "object", "additionalProperties": string() }, "updateStatus": { "type": "string", "enum": ["unknown", "registered", "pending", "in_sync", "error"] }, "installedActionId": integer(), "lastPollAt": integer(), "securityToken": string() })),
        "Tags": object(&["tags"], json!({ "tags": strings() })),
        "AssignToTarget": object(&["id"], json!({ "id": integer(), "type": action_type, "forcetime": integer(), "maintenanceWindow": maintenance })),
        "AssignToMany": object(&[], json!({ "targets": strings(), "tag": string(), "type": action_type, "forcetime": integer(), "maintenanceWindow": maintenance })),
        "Action": object(&[], json!({ "id": integer(), "distributionSetId": integer(), "rolloutId": integer(), "rolloutGroupId": integer(), "type": action_type, "status": { "type": "string", "enum": ["running", "download", "downloaded", "warning", "canceling", "finished", "error", "canceled"] }, "active": { "type": "boolean" }, "history": { "type": "array", "items": { "type": "object" } } })),
        "NewRollout": object(&["name", "distributionSetId"], json!({ "name": string(), "distributionSetId": integer(), "type": action_type, "successThreshold": integer(), "errorThreshold": integer(), "groups": { "type": "array", "items": object(&[], json!({ "name": string(), "targets": strings(), "tag": string() })) }, "amountGroups": integer(), "targets": strings(), "tag": string() })),
        "Rollout": object(&[], json!({ "id": integer(), "name": string(), "distributionSetId": integer(), "status": { "type": "string", "enum": ["ready", "running", "paused", "halted", "finished", "canceled"] }, "statusReason": string(), "successThreshold": integer(), "errorThreshold": integer(), "groups": { "type": "array", "items": { "type": "object" } }, "counts": { "type": "object" } })),
        "DdiFeedback": object(&["status"], json!({ "timestamp": integer(), "status": object(&["execution", "result"], json!({ "execution": { "type": "string", "enum": ["closed", "proceeding", "canceled", "scheduled", "rejected", "resumed", "download", "downloaded"] }, "result": object(&["finished"], json!({ "finished": { "type": "string", "enum": ["success", "failure", "none"] }, "progress": object(&[], json!({ "cnt": integer(), "of": integer() })) })), "code": integer(), "details": strings() })) })),
        "DdiConfigData": object(&["data"], json!({ "mode": { "type": "string", "enum": ["merge", "replace", "remove"] }, "data": { "type": "object", "additionalProperties": string() } })),
    })
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let parameters: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut operation = json!({
            "summary": op.summary,
            "tags": [if op.path.starts_with("/rest/") { "management" } else { "ddi" }],
            "parameters": parameters,
            "responses": {
                "200": { "description": "OK" },
                "400": { "description": "Bad request", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "401": { "description": "Missing or wrong token" },
                "403": { "description": "Role too low" },
                "404": { "description": "Not found" },
            },
        });
        if let Some(response) = op.response {
            operation["responses"]["200"]["content"] = json!({ "application/json": { "schema": { "$ref": format!("#/components/schemas/{response}") } } });
        }
        match op.role {
            Some("device") => {
                operation["security"] = json!([{ "TargetToken": [] }, { "GatewayToken": [] }])
            }
            Some(role) => {
                operation["security"] = json!([{ "bearer": [] }]);
                operation["x-keel-role"] = json!(role);
            }
            None => operation["security"] = json!([]),
        }
        match op.request {
            Some("binary") => {
                operation["requestBody"] = json!({ "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } });
                if let Some(parameters) = operation["parameters"].as_array_mut() {
                    parameters.push(json!({ "name": "filename", "in": "query", "required": true, "schema": { "type": "string" } }));
                }
            }
            Some(schema) => {
                operation["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
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
            "description": "Management API (/rest/v1, Bearer token with role viewer/operator/admin; tenant via X-Keel-Tenant header, default 'default') and hawkBit DDI device API (/{tenant}/controller/v1)."
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

/// `(METHOD, path)` of every documented operation, for tests that check the router serves them all.
pub fn operations() -> Vec<(String, String)> {
    OPERATIONS
        .iter()
        .map(|op| (op.method.to_uppercase(), op.path.to_string()))
        .collect()
}
