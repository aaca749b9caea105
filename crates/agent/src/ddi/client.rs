//! The HTTP side of DDI: polling, deployment and cancel resources, feedback, attributes.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::DdiError;
use crate::config::DdiConfig;
use crate::source::http_agent;

/// A DDI session for one controller id.
pub struct DdiClient {
    pub(super) http: ureq::Agent,
    pub(super) base: String,
    auth: Option<String>,
    /// The slot attributes last accepted by the server (sent again only when they change, when
    /// the server asks, or by a new process).
    pub(super) sent_attributes: RefCell<Option<BTreeMap<String, String>>>,
}

impl DdiClient {
    /// A client for `config`'s server, tenant and controller id, with its target token (or
    /// gateway token) as `Authorization`. Sends nothing until used.
    pub fn new(config: &DdiConfig, tls: &crate::config::TlsConfig) -> Result<DdiClient, DdiError> {
        let auth = match (&config.target_token, &config.gateway_token) {
            (Some(t), _) => Some(format!("TargetToken {t}")),
            (None, Some(g)) => Some(format!("GatewayToken {g}")),
            (None, None) => None,
        };
        let http = http_agent(tls).map_err(|message| DdiError::Http {
            method: "GET",
            url: config.url.clone(),
            message,
        })?;
        Ok(DdiClient {
            http,
            base: format!(
                "{}/{}/controller/v1/{}",
                config.url.trim_end_matches('/'),
                config.tenant,
                config.controller_id
            ),
            auth,
            sent_attributes: RefCell::new(None),
        })
    }

    /// `PUT configData` (merge): the booted slot's attributes.
    pub(super) fn send_attributes(
        &self,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), DdiError> {
        let url = format!("{}/configData", self.base);
        let mut request = self
            .http
            .put(&url)
            .header("Content-Type", "application/json");
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        let body = json!({ "mode": "merge", "data": attributes });
        request
            .send(body.to_string().as_bytes())
            .map_err(|e| DdiError::Http {
                method: "PUT",
                url,
                message: e.to_string(),
            })?;
        *self.sent_attributes.borrow_mut() = Some(attributes.clone());
        Ok(())
    }

    pub(super) fn headers(&self) -> Vec<(String, String)> {
        self.auth
            .iter()
            .map(|a| ("Authorization".to_string(), a.clone()))
            .collect()
    }

    pub(super) fn get_json(&self, url: &str) -> Result<Value, DdiError> {
        let mut request = self.http.get(url).header("Accept", "application/hal+json");
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        let err = |message: String| DdiError::Http {
            method: "GET",
            url: url.to_string(),
            message,
        };
        let mut response = request.call().map_err(|e| err(e.to_string()))?;
        let body = response
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_string()
            .map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&body).map_err(|e| DdiError::Response {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// POST feedback; `Ok(true)` when accepted, `Ok(false)` when the action is already closed
    /// (410): either way there is nothing left to send.
    fn post_feedback(&self, url: &str, body: &Value) -> Result<bool, DdiError> {
        let mut request = self
            .http
            .post(url)
            .config()
            .http_status_as_error(false)
            .build()
            .header("Content-Type", "application/json");
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        let response = request
            .send(body.to_string().as_bytes())
            .map_err(|e| DdiError::Http {
                method: "POST",
                url: url.to_string(),
                message: e.to_string(),
            })?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            410 => Ok(false),
            status => Err(DdiError::Http {
                method: "POST",
                url: url.to_string(),
                message: format!("status {status}"),
            }),
        }
    }

    /// Sends deployment feedback for `action_id`: `execution` (`proceeding`, `closed`, ...),
    /// `finished` (`none`, `success`, `failure`), optional progress (`cnt` of `of`) and one line
    /// of details. `Ok(true)` when the server accepted it (2xx), `Ok(false)` when the action is
    /// already closed (410); any other status is an error.
    pub fn feedback(
        &self,
        action_id: &str,
        execution: &str,
        finished: &str,
        progress: Option<(u64, u64)>,
        details: &str,
    ) -> Result<bool, DdiError> {
        let mut result = json!({ "finished": finished });
        if let Some((cnt, of)) = progress {
            result["progress"] = json!({ "cnt": cnt, "of": of });
        }
        let body = json!({
            "status": { "execution": execution, "result": result, "details": [details] }
        });
        self.post_feedback(
            &format!("{}/deploymentBase/{action_id}/feedback", self.base),
            &body,
        )
    }

    pub(super) fn cancel_feedback(&self, action_id: &str) -> Result<bool, DdiError> {
        let body = json!({
            "status": { "execution": "closed", "result": { "finished": "success" }, "details": ["canceled by keel-agent"] }
        });
        self.post_feedback(
            &format!("{}/cancelAction/{action_id}/feedback", self.base),
            &body,
        )
    }
}
