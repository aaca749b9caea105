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
    /// Tenant to act on.
    #[arg(long, env = "KEEL_TENANT", default_value = "default")]
    tenant: String,
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
    /// List devices.
    List {
        #[arg(long)]
        tag: Option<String>,
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
                .agent
                .get(&self.url(path))
                .header("Authorization", &auth)
                .header("X-Keel-Tenant", &self.server.tenant)
                .call(),
            ("POST", Some(body)) => self
                .agent
                .post(&self.url(path))
                .header("Authorization", &auth)
                .header("X-Keel-Tenant", &self.server.tenant)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
            ("POST", None) => self
                .agent
                .post(&self.url(path))
                .header("Authorization", &auth)
                .header("X-Keel-Tenant", &self.server.tenant)
                .send_empty(),
            _ => bail!("unsupported method {method}"),
        };
        self.finish(&what, response)
    }

    fn upload(
        &self,
        module_id: i64,
        filename: &str,
        file: &std::fs::File,
    ) -> anyhow::Result<Value> {
        let path = format!("/rest/v1/softwaremodules/{module_id}/artifacts");
        let response = self
            .agent
            .post(&self.url(&path))
            .query("filename", filename)
            .header("Authorization", &format!("Bearer {}", self.server.token))
            .header("X-Keel-Tenant", &self.server.tenant)
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
        Command::Device(DeviceCommand::List { tag, server }) => {
            let client = Client::new(server);
            let path = match &tag {
                Some(tag) => format!("/rest/v1/targets?tag={}", encode_query(tag)),
                None => "/rest/v1/targets".to_string(),
            };
            let targets = client.send("GET", &path, None)?;
            client.print(&targets, |list| {
                let mut out = format!("{:<24} {:<10} {}", "DEVICE", "STATUS", "TAGS");
                for t in list.as_array().into_iter().flatten() {
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
            let actions = client.send("GET", &format!("/rest/v1/targets/{id}/actions"), None)?;
            let mut detailed = Vec::new();
            for action in actions.as_array().into_iter().flatten() {
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

fn encode_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn encode_query(value: &str) -> String {
    encode_path(value)
}

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
