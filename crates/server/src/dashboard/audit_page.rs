//! The audit log page (admins): the tenant's records newest first, filtered like
//! `GET /rest/v1/audit`, a page of 50 at a time.

use super::html::{esc, time, url_part};
use super::pages::{db, query_fields, render};
use super::{error_page, Ctx};
use crate::store::{AuditFilter, Page};
use crate::AppState;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::fmt::Write;
use std::sync::Arc;

const PER_PAGE: i64 = 50;

pub async fn audit(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    RawQuery(query): RawQuery,
) -> Response {
    if !ctx.is_admin() {
        return error_page(
            Some(&ctx),
            StatusCode::FORBIDDEN,
            &format!("role admin required, you have {}", ctx.role.as_str()),
        );
    }
    let query = query_fields(query);
    let actor = query.text("actor");
    let action = query.text("action");
    let failed = query.text("failed") == "on";
    let page: i64 = query.text("page").parse().unwrap_or(1).clamp(1, 1_000_000);
    let filter = AuditFilter {
        tenant_id: Some(ctx.tenant.id),
        actor: (!actor.is_empty()).then(|| actor.clone()),
        action: (!action.is_empty()).then(|| action.clone()),
        failed_only: failed,
        ..AuditFilter::default()
    };
    let Page {
        rows: records,
        total,
    } = match db(state
        .store
        .audit(&filter, (page - 1) * PER_PAGE, PER_PAGE)
        .await)
    {
        Ok(found) => found,
        Err(response) => return response,
    };
    let mut body = String::with_capacity(16 * 1024);
    let _ = write!(
        body,
        "<h1>Audit log</h1><form method=\"get\" action=\"/ui/audit\" class=\"filters\" id=\"audit-filter\">\
         <label>Actor <input name=\"actor\" value=\"{}\"></label>\
         <label>Action starts with <input name=\"action\" value=\"{}\"></label>\
         <label><input type=\"checkbox\" name=\"failed\"{}> refusals and failures only</label>\
         <button type=\"submit\">Filter</button></form>\
         <table class=\"list\" id=\"audit\"><thead><tr><th>Time</th><th>Status</th><th>Actor</th>\
         <th>Action</th><th>Object</th><th>From</th><th>Detail</th></tr></thead><tbody>",
        esc(&actor),
        esc(&action),
        if failed { " checked" } else { "" }
    );
    for r in &records {
        let _ = write!(
            body,
            "<tr data-status=\"{status}\"><td>{}</td><td>{status}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&time(r.at)),
            esc(&r.actor),
            esc(&r.action),
            esc(&r.object),
            esc(r.address.as_deref().unwrap_or("")),
            esc(r.detail.as_deref().unwrap_or("")),
            status = r.status,
        );
    }
    if records.is_empty() {
        body.push_str("<tr><td colspan=\"7\">No records.</td></tr>");
    }
    let first = if records.is_empty() {
        0
    } else {
        (page - 1) * PER_PAGE + 1
    };
    let _ = write!(
        body,
        "</tbody></table><p class=\"pager\" id=\"audit-pager\">Records {first}–{} of {total}",
        (page - 1) * PER_PAGE + records.len() as i64
    );
    let link = |p: i64, label: &str| {
        let mut href = format!("/ui/audit?page={p}");
        if !actor.is_empty() {
            let _ = write!(href, "&actor={}", url_part(&actor));
        }
        if !action.is_empty() {
            let _ = write!(href, "&action={}", url_part(&action));
        }
        if failed {
            href.push_str("&failed=on");
        }
        format!(" <a href=\"{}\">{label}</a>", esc(&href))
    };
    if page > 1 {
        body.push_str(&link(page - 1, "Newer"));
    }
    if page * PER_PAGE < total {
        body.push_str(&link(page + 1, "Older"));
    }
    body.push_str("</p>");
    render(&ctx, "Audit log", "audit", &body)
}
