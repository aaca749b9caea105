//! Fleet management against keel-server's management API: `keel upload`, `keel device`,
//! `keel assign`, `keel rollout ...`. Every command prints a short human summary, or the server's
//! JSON with `--json`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Where the server is and who we are.
#[derive(Args, Debug, Clone)]
pub struct Server {
    /// keel-server base URL.
    #[arg(long, env = "KEEL_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Management API token (see DATA_DIR/admin.token on the server).
    #[arg(long, env = "KEEL_TOKEN", hide_env_values = true)]
    token: String,
    /// Tenant to act on. A token bound to one tenant acts on that tenant without it; a
    /// cross-tenant token acts on `default` without it.
    #[arg(long, env = "KEEL_TENANT")]
    tenant: Option<String>,
    /// Print the server's JSON response instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Upload an artifact (e.g. a .swu bundle) as a new software module and distribution set.
    Upload {
        /// The file to upload; streamed, hashed by the server on the way in.
        file: PathBuf,
        /// Name of the software module and distribution set.
        #[arg(long)]
        name: String,
        /// Version of the software module and distribution set.
        #[arg(long)]
        version: String,
        /// Software module type (the DDI chunk "part").
        #[arg(long = "type", default_value = "os")]
        module_type: String,
        /// File name devices see (default: the file's own name).
        #[arg(long)]
        filename: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// Register and inspect devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Assign a distribution set to devices (by id and/or tag).
    Assign {
        /// Distribution set id (printed by `keel upload`).
        #[arg(long = "set")]
        set_id: i64,
        /// Device controller id (repeatable).
        #[arg(long = "device")]
        devices: Vec<String>,
        /// All devices with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// soft, forced, timeforced or downloadonly.
        #[arg(long = "type", default_value = "forced")]
        action_type: String,
        #[command(flatten)]
        server: Server,
    },
    /// Rollouts in groups with success and error thresholds.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// The server's audit log: changes, logins and refused credentials, newest first.
    Audit {
        /// Only records of this actor (a token name, `user "alice"`, `(device)`).
        #[arg(long)]
        actor: Option<String>,
        /// Only actions starting with this, e.g. `login` or `POST /rest/v1/targets`.
        #[arg(long)]
        action: Option<String>,
        /// Only refusals and failures (HTTP status 400 or above).
        #[arg(long)]
        failed: bool,
        /// Every tenant's records and those of no tenant (unknown tokens); cross-tenant tokens only.
        #[arg(long)]
        all: bool,
        /// Records per page (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Skip this many records (the next page starts at offset + limit).
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Pre-register a device; prints its TargetToken (shown only once).
    Add {
        controller_id: String,
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Use this token instead of a generated one.
        #[arg(long = "device-token")]
        device_token: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// List devices, fetched a page at a time.
    List {
        /// Only devices with exactly this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Filter in the server's FIQL subset, e.g. `name==gw-*;updateStatus==error`
        /// (docs/management-api.md, "Lists").
        #[arg(long, short = 'q')]
        filter: Option<String>,
        /// Order, e.g. `lastPollAt:DESC` or `controllerId:ASC`.
        #[arg(long)]
        sort: Option<String>,
        /// Print at most this many devices (default: all).
        #[arg(long)]
        limit: Option<usize>,
        /// Devices fetched per request (1..500).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=500))]
        page_size: u16,
        #[command(flatten)]
        server: Server,
    },
    /// A device's state and action history.
    Show {
        controller_id: String,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(Subcommand)]
pub enum RolloutCommand {
    /// Create a rollout (state "ready"; start it with `keel rollout start`).
    Create {
        #[arg(long)]
        name: String,
        /// Distribution set id.
        #[arg(long = "set")]
        set_id: i64,
        /// An explicit group: comma-separated controller ids (repeat for each group, in order).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// An explicit group: all devices with this tag (repeat for each group, in order).
        #[arg(long = "group-tag")]
        group_tags: Vec<String>,
        /// Or split the devices with this tag into --groups groups.
        #[arg(long)]
        tag: Option<String>,
        /// Number of groups when splitting --tag.
        #[arg(long = "groups", default_value_t = 1)]
        amount_groups: usize,
        /// Percent of a group that must succeed before the next group starts.
        #[arg(long = "success-threshold", default_value_t = 100)]
        success_threshold: i64,
        /// Percent of a group that may fail; above it the rollout halts.
        #[arg(long = "error-threshold", default_value_t = 0)]
        error_threshold: i64,
        #[arg(long = "type", default_value = "forced")]
        action_type: String,
        #[command(flatten)]
        server: Server,
    },
    /// Start a ready rollout.
    Start {
        id: i64,
        #[command(flatten)]
        server: Server,
    },
    /// Pause: groups not yet started wait.
    Pause {
        id: i64,
        #[command(flatten)]
        server: Server,
    },
    /// Resume a paused or halted rollout.
    Resume {
        id: i64,
        #[command(flatten)]
        server: Server,
    },
    /// Cancel: unstarted groups never start, open actions are canceled.
    Cancel {
        id: i64,
        #[command(flatten)]
        server: Server,
    },
    /// Status with per-group counts.
    Status {
        id: i64,
        #[command(flatten)]
        server: Server,
    },
}

struct Client {
    agent: ureq::Agent,
    server: Server,
}

impl Client {
    fn new(server: Server) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            server,
        }
    }

    /// Names the tenant with `X-Keel-Tenant` when one was given.
    fn with_tenant<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.server.tenant {
            Some(tenant) => request.header("X-Keel-Tenant", tenant),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.server.trim_end_matches('/'))
    }

    fn finish(
        &self,
        what: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let response =
            response.with_context(|| format!("{what}: cannot reach {}", self.server.server))?;
        let status = response.status();
        let text = response
            .into_body()
            .read_to_string()
            .with_context(|| format!("{what}: reading the response"))?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let message = value["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            bail!("{what}: server answered {status}: {message}");
        }
        Ok(value)
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let what = format!("{method} {path}");
        let auth = format!("Bearer {}", self.server.token);
        let response = match (method, body) {
            ("GET", _) => self
                .with_tenant(self.agent.get(&self.url(path)))
                .header("Authorization", &auth)
                .call(),
            ("POST", Some(body)) => self
                .with_tenant(self.agent.post(&self.url(path)))
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
            ("POST", None) => self
                .with_tenant(self.agent.post(&self.url(path)))
                .header("Authorization", &auth)
                .send_empty(),
            _ => bail!("unsupported method {method}"),
        };
        self.finish(&what, response)
    }

    /// Every item of a paged list endpoint (`{"content", "total", "size"}`), fetched with
    /// `offset`/`limit` a page at a time; at most `max` items. Returns the same shape.
    fn list_all(
        &self,
        path: &str,
        params: &[(&str, &str)],
        max: Option<usize>,
        page_size: usize,
    ) -> anyhow::Result<Value> {
        let mut content = Vec::new();
        let total = loop {
            let want = match max {
                Some(max) => page_size.min(max - content.len()),
                None => page_size,
            };
            let mut query = format!("offset={}&limit={want}", content.len());
            for (name, value) in params {
                query.push_str(&format!("&{name}={}", encode_query(value)));
            }
            let page = self.send("GET", &format!("{path}?{query}"), None)?;
            let Some(items) = page["content"].as_array() else {
                bail!("GET {path}: the answer is not a page ({{\"content\": [...]}}); is the server older than this keel?");
            };
            let total = page["total"].as_u64().unwrap_or(0);
            let got = items.len();
            content.extend(items.iter().cloned());
            let done = got == 0
                || content.len() as u64 >= total
                || max.is_some_and(|max| content.len() >= max);
            if done {
                break total;
            }
        };
        let size = content.len();
        Ok(json!({ "content": content, "total": total, "size": size }))
    }

    fn upload(
        &self,
        module_id: i64,
        filename: &str,
        file: &std::fs::File,
    ) -> anyhow::Result<Value> {
        let path = format!("/rest/v1/softwaremodules/{module_id}/artifacts");
        let response = self
            .with_tenant(self.agent.post(&self.url(&path)))
            .query("filename", filename)
            .header("Authorization", &format!("Bearer {}", self.server.token))
            .header("Content-Type", "application/octet-stream")
            .send(file);
        self.finish(&format!("POST {path}"), response)
    }

    fn print(&self, value: &Value, summary: impl FnOnce(&Value) -> String) {
        if self.server.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            println!("{}", summary(value));
        }
    }
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Upload {
            file,
            name,
            version,
            module_type,
            filename,
            server,
        } => {
            let client = Client::new(server);
            let filename = match filename {
                Some(f) => f,
                None => file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("the file has no usable name; give --filename")?
                    .to_string(),
            };
            let handle = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let module = client.send(
                "POST",
                "/rest/v1/softwaremodules",
                Some(&json!({ "name": name, "version": version, "type": module_type })),
            )?;
            let module_id = module["id"]
                .as_i64()
                .context("server returned no module id")?;
            let artifact = client.upload(module_id, &filename, &handle)?;
            let set = client.send(
                "POST",
                "/rest/v1/distributionsets",
                Some(&json!({ "name": name, "version": version, "modules": [module_id] })),
            )?;
            let result =
                json!({ "distributionSet": set, "softwareModule": module, "artifact": artifact });
            client.print(&result, |r| {
                format!(
                    "distribution set {} ({} {}): {} {} bytes sha256 {}",
                    r["distributionSet"]["id"],
                    name,
                    version,
                    r["artifact"]["filename"].as_str().unwrap_or(""),
                    r["artifact"]["size"],
                    r["artifact"]["sha256"].as_str().unwrap_or("")
                )
            });
            Ok(())
        }
        Command::Device(DeviceCommand::Add {
            controller_id,
            tags,
            device_token,
            server,
        }) => {
            let client = Client::new(server);
            let mut body = json!({ "controllerId": controller_id, "tags": tags });
            if let Some(token) = device_token {
                body["securityToken"] = json!(token);
            }
            let target = client.send("POST", "/rest/v1/targets", Some(&body))?;
            client.print(&target, |t| {
                format!(
                    "device {} registered; TargetToken {}",
                    controller_id,
                    t["securityToken"].as_str().unwrap_or("")
                )
            });
            Ok(())
        }
        Command::Device(DeviceCommand::List {
            tag,
            filter,
            sort,
            limit,
            page_size,
            server,
        }) => {
            let client = Client::new(server);
            let mut params = Vec::new();
            for (name, value) in [("tag", &tag), ("q", &filter), ("sort", &sort)] {
                if let Some(value) = value {
                    params.push((name, value.as_str()));
                }
            }
            let targets =
                client.list_all("/rest/v1/targets", &params, limit, usize::from(page_size))?;
            client.print(&targets, |list| {
                let mut out = format!("{:<24} {:<10} {}", "DEVICE", "STATUS", "TAGS");
                for t in list["content"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "\n{:<24} {:<10} {}",
                        t["controllerId"].as_str().unwrap_or(""),
                        t["updateStatus"].as_str().unwrap_or(""),
                        t["tags"]
                            .as_array()
                            .map(|a| a
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(","))
                            .unwrap_or_default()
                    ));
                }
                let shown = list["size"].as_u64().unwrap_or(0);
                let total = list["total"].as_u64().unwrap_or(0);
                if shown < total {
                    out.push_str(&format!(
                        "\n({shown} of {total} devices; --limit shows more)"
                    ));
                }
                out
            });
            Ok(())
        }
        Command::Device(DeviceCommand::Show {
            controller_id,
            server,
        }) => {
            let client = Client::new(server);
            let id = encode_path(&controller_id);
            let mut target = client.send("GET", &format!("/rest/v1/targets/{id}"), None)?;
            let actions =
                client.list_all(&format!("/rest/v1/targets/{id}/actions"), &[], None, 500)?;
            let mut detailed = Vec::new();
            for action in actions["content"].as_array().into_iter().flatten() {
                if let Some(action_id) = action["id"].as_i64() {
                    detailed.push(client.send(
                        "GET",
                        &format!("/rest/v1/targets/{id}/actions/{action_id}"),
                        None,
                    )?);
                }
            }
            target["actions"] = Value::Array(detailed);
            client.print(&target, |t| device_summary(&controller_id, t));
            Ok(())
        }
        Command::Assign {
            set_id,
            devices,
            tag,
            action_type,
            server,
        } => {
            if devices.is_empty() && tag.is_none() {
                bail!("give --device (repeatable) and/or --tag");
            }
            let client = Client::new(server);
            let result = client.send(
                "POST",
                &format!("/rest/v1/distributionsets/{set_id}/assignedTargets"),
                Some(&json!({ "targets": devices, "tag": tag, "type": action_type })),
            )?;
            client.print(&result, |r| {
                let mut out = format!("assigned set {set_id} to {} device(s)", r["assigned"]);
                for a in r["actions"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "\n  {} action {}",
                        a["controllerId"].as_str().unwrap_or(""),
                        a["actionId"]
                    ));
                }
                out
            });
            Ok(())
        }
        Command::Rollout(command) => rollout(command),
        Command::Audit {
            actor,
            action,
            failed,
            all,
            limit,
            offset,
            server,
        } => {
            let client = Client::new(server);
            let mut query = format!("limit={limit}&offset={offset}");
            if let Some(actor) = &actor {
                query.push_str(&format!("&actor={}", encode_query(actor)));
            }
            if let Some(action) = &action {
                query.push_str(&format!("&action={}", encode_query(action)));
            }
            if failed {
                query.push_str("&failed=true");
            }
            if all {
                query.push_str("&all=true");
            }
            let page = client.send("GET", &format!("/rest/v1/audit?{query}"), None)?;
            client.print(&page, audit_summary);
            Ok(())
        }
    }
}

fn rollout(command: RolloutCommand) -> anyhow::Result<()> {
    match command {
        RolloutCommand::Create {
            name,
            set_id,
            groups,
            group_tags,
            tag,
            amount_groups,
            success_threshold,
            error_threshold,
            action_type,
            server,
        } => {
            let client = Client::new(server);
            let mut body = json!({
                "name": name,
                "distributionSetId": set_id,
                "type": action_type,
                "successThreshold": success_threshold,
                "errorThreshold": error_threshold,
            });
            let mut explicit: Vec<Value> = groups
                .iter()
                .map(|g| json!({ "targets": g.split(',').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>() }))
                .collect();
            explicit.extend(group_tags.iter().map(|t| json!({ "tag": t })));
            if !explicit.is_empty() {
                if tag.is_some() {
                    bail!("give either --group/--group-tag or --tag with --groups");
                }
                body["groups"] = Value::Array(explicit);
            } else {
                let Some(tag) = tag else {
                    bail!("give --group/--group-tag or --tag with --groups")
                };
                body["tag"] = json!(tag);
                body["amountGroups"] = json!(amount_groups);
            }
            let rollout = client.send("POST", "/rest/v1/rollouts", Some(&body))?;
            client.print(&rollout, status_summary);
            Ok(())
        }
        RolloutCommand::Start { id, server } => operation(server, id, "start"),
        RolloutCommand::Pause { id, server } => operation(server, id, "pause"),
        RolloutCommand::Resume { id, server } => operation(server, id, "resume"),
        RolloutCommand::Cancel { id, server } => operation(server, id, "cancel"),
        RolloutCommand::Status { id, server } => {
            let client = Client::new(server);
            let rollout = client.send("GET", &format!("/rest/v1/rollouts/{id}"), None)?;
            client.print(&rollout, status_summary);
            Ok(())
        }
    }
}

fn operation(server: Server, id: i64, operation: &str) -> anyhow::Result<()> {
    let client = Client::new(server);
    let rollout = client.send("POST", &format!("/rest/v1/rollouts/{id}/{operation}"), None)?;
    client.print(&rollout, status_summary);
    Ok(())
}

/// A JSON scalar as a user reads it: strings bare, `null` as `-`.
fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned first `left` columns, right-aligned numbers after; widths from the content.
fn table(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| {
                if i < left {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        format!("\n  {}", parts.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn status_summary(r: &Value) -> String {
    let mut out = format!(
        "rollout {} \"{}\": {}{} (success >= {}%, error > {}% halts)",
        plain(&r["id"]),
        r["name"].as_str().unwrap_or(""),
        r["status"].as_str().unwrap_or(""),
        r["statusReason"]
            .as_str()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default(),
        plain(&r["successThreshold"]),
        plain(&r["errorThreshold"])
    );
    let rows: Vec<Vec<String>> = r["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let c = &g["counts"];
            let mut row = vec![plain(&g["name"]), plain(&g["status"])];
            for key in [
                "total",
                "scheduled",
                "running",
                "finished",
                "error",
                "canceled",
            ] {
                row.push(plain(&c[key]));
            }
            row
        })
        .collect();
    out.push_str(&table(
        &[
            "GROUP",
            "STATUS",
            "TOTAL",
            "SCHEDULED",
            "RUNNING",
            "FINISHED",
            "ERROR",
            "CANCELED",
        ],
        &rows,
        2,
    ));
    out
}

/// `keel device show`: the device, what is installed, and each action with the device's own
/// words (the messages of the latest history entry that has any: a failure's reason).
fn device_summary(controller_id: &str, t: &Value) -> String {
    let installed = match &t["installedDistributionSetId"] {
        Value::Null => "nothing installed through the server yet".to_string(),
        id => format!("installed set {}", plain(id)),
    };
    let mut out = format!(
        "device {controller_id}: {} ({installed})",
        t["updateStatus"].as_str().unwrap_or("unknown")
    );
    for a in t["actions"].as_array().into_iter().flatten() {
        let messages: Vec<String> = a["history"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
            .find_map(|e| e["messages"].as_array().filter(|m| !m.is_empty()))
            .into_iter()
            .flatten()
            .map(plain)
            .collect();
        out.push_str(&format!(
            "\n  action {} set {} {}: {}",
            plain(&a["id"]),
            plain(&a["distributionSetId"]),
            a["type"].as_str().unwrap_or(""),
            a["status"].as_str().unwrap_or(""),
        ));
        if !messages.is_empty() {
            out.push_str(&format!(" ({})", messages.join("; ")));
        }
    }
    out
}

/// One line per audit record: time (UTC), status, actor, action, object, address.
fn audit_summary(page: &Value) -> String {
    let records = page["content"].as_array().cloned().unwrap_or_default();
    let mut rows = vec![[
        "TIME (UTC)".to_string(),
        "STATUS".into(),
        "ACTOR".into(),
        "ACTION".into(),
        "OBJECT".into(),
        "FROM".into(),
    ]];
    for r in &records {
        let at = r["at"]
            .as_i64()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        rows.push([
            at,
            r["status"].to_string(),
            text(&r["actor"]),
            text(&r["action"]),
            text(&r["object"]),
            text(&r["address"]),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out: Vec<String> = rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect();
    let offset = page["offset"].as_u64().unwrap_or(0);
    out.push(format!(
        "records {}-{} of {}",
        if records.is_empty() {
            offset
        } else {
            offset + 1
        },
        offset + records.len() as u64,
        page["total"]
    ));
    out.join("\n")
}

use keel_tuf::store::percent_encode as encode_path;
use keel_tuf::store::percent_encode as encode_query;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_show_names_what_is_installed_and_the_failure() {
        let device = json!({
            "updateStatus": "error",
            "installedDistributionSetId": null,
            "actions": [{
                "id": 7, "distributionSetId": 2, "type": "forced", "status": "error",
                "history": [
                    {"status": "running", "messages": ["assigned"]},
                    {"status": "error", "messages": ["install failed: image rootfs: sha256 mismatch", "Device reported status code: 3"]},
                    {"status": "error", "messages": []}
                ]
            }]
        });
        let text = device_summary("dev-1", &device);
        assert_eq!(
            text,
            "device dev-1: error (nothing installed through the server yet)\n  \
             action 7 set 2 forced: error (install failed: image rootfs: sha256 mismatch; Device reported status code: 3)"
        );
        assert!(!text.contains("null"));
    }

    #[test]
    fn rollout_status_columns_line_up() {
        let rollout = json!({
            "id": 3, "name": "spring", "status": "running", "successThreshold": 90, "errorThreshold": 10,
            "groups": [
                {"name": "canary", "status": "finished", "counts": {"total": 5, "scheduled": 0, "running": 0, "finished": 5, "error": 0, "canceled": 0}},
                {"name": "a-much-longer-group-name", "status": "running", "counts": {"total": 1200, "scheduled": 1000, "running": 150, "finished": 40, "error": 10, "canceled": 0}}
            ]
        });
        let text = status_summary(&rollout);
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(lines.len(), 3, "{text}");
        // Every column ends at the same character position on every line.
        let ends = |line: &str| -> Vec<usize> {
            let chars: Vec<char> = format!("{line} ").chars().collect();
            chars
                .windows(2)
                .enumerate()
                .filter(|(_, w)| w[0] != ' ' && w[1] == ' ')
                .map(|(i, _)| i)
                .collect()
        };
        let numeric = |line: &str| ends(line)[2..].to_vec();
        assert_eq!(numeric(lines[0]), numeric(lines[1]), "{text}");
        assert_eq!(numeric(lines[1]), numeric(lines[2]), "{text}");
        let starts = |line: &str| line.find(|c: char| c != ' ').unwrap();
        assert_eq!(starts(lines[0]), starts(lines[2]));
        assert!(text.starts_with("rollout 3 \"spring\": running"), "{text}");
    }
}
