//! The I/O around the cycle's [`Machine`]: answers its requests (state file, bootloader,
//! HTTP, install) with events and performs its effects. No decisions are made here.

use std::time::Duration;

use keel_tuf::TargetInfo;
use serde_json::Value;

use super::attributes::learn_factory_images;
use super::machine::{Effect, Event, Feedback, Machine, Offer, Poll, Request, Settings};
use super::{CycleEvent, DdiClient, DdiError};
use crate::agent::{run_health_check, Agent};
use crate::bootloader::UState;
use crate::chunks::PackSource;
use crate::reconcile::Verdict;

/// One poll cycle; returns what happened and how long to sleep.
pub fn cycle(
    agent: &mut Agent,
    client: &DdiClient,
) -> Result<(Vec<CycleEvent>, Duration), DdiError> {
    let settings = Settings {
        max_interrupted_attempts: agent.config.max_interrupted_attempts,
        poll: Duration::from_secs(agent.ddi_poll_secs()),
    };
    let mut driver = Driver {
        agent,
        client,
        deployment: None,
    };
    let (mut machine, mut request) = Machine::start(settings);
    loop {
        let event = driver.answer(&machine, request)?;
        let (next, output) = machine.step(event);
        machine = next;
        for effect in output.effects {
            driver.perform(&machine, effect)?;
        }
        match output.request {
            Some(next) => request = next,
            None => return Ok(machine.finish()),
        }
    }
}

/// The deployment being considered: what the TUF check and the download need of it.
pub(super) struct Deployment {
    json: Value,
    pub(super) artifact: Option<Value>,
    /// The other artifacts of the bundle's software module: packs of keel-chunked images.
    pub(super) packs: PackSource,
    pub(super) tuf: Option<TargetInfo>,
}

struct Driver<'a> {
    agent: &'a mut Agent,
    client: &'a DdiClient,
    deployment: Option<Deployment>,
}

impl Driver<'_> {
    fn answer(&mut self, machine: &Machine, request: Request) -> Result<Event, DdiError> {
        let (agent, client) = (&mut *self.agent, self.client);
        Ok(match request {
            Request::Reconcile => {
                let (record, booted, view, verdict) = agent.reconcile()?;
                // With GRUB (RAUC's scheme) every boot is a test boot.
                let testing = verdict == Verdict::Testing || view.ustate == UState::Testing;
                Event::Reconciled {
                    record,
                    booted,
                    testing,
                }
            }
            Request::Confirm => {
                let health = agent.config.health_check.clone();
                match health.as_deref().map(run_health_check).unwrap_or(Ok(())) {
                    Ok(()) => Event::Confirmed {
                        record: agent.confirm_checked()?,
                    },
                    Err(e) => Event::HealthCheckFailed(e.to_string()),
                }
            }
            Request::Feedback(feedback) => Event::Feedback(Some(send(client, &feedback)?)),
            Request::TryFeedback(feedback) => Event::Feedback(send(client, &feedback).ok()),
            Request::FactoryImages => {
                Event::FactoryImages(learn_factory_images(agent, machine.booted, &machine.record))
            }
            Request::Poll => {
                let poll = client.get_json(&client.base)?;
                let links = &poll["_links"];
                Event::Polled(Poll {
                    sleep: poll["config"]["polling"]["sleep"]
                        .as_str()
                        .and_then(super::parse_sleep),
                    attributes_requested: links["configData"]["href"].is_string(),
                    cancel: links["cancelAction"]["href"].as_str().map(str::to_string),
                    deployment: links["deploymentBase"]["href"].as_str().map(str::to_string),
                })
            }
            Request::FetchCancel(href) => {
                let cancel = client.get_json(&href)?;
                let stop_id = cancel["cancelAction"]["stopId"]
                    .as_str()
                    .or_else(|| cancel["id"].as_str())
                    .unwrap_or_default()
                    .to_string();
                Event::CancelFetched { stop_id }
            }
            Request::AckCancel(stop_id) => Event::Feedback(Some(client.cancel_feedback(&stop_id)?)),
            Request::FetchDeployment(href) => {
                let (offer, deployment) = fetch_deployment(client, &href)?;
                self.deployment = Some(deployment);
                Event::Offered(offer)
            }
            Request::CheckTuf => {
                let deployment = self.deployment.as_mut().ok_or_else(no_deployment)?;
                let artifact = deployment.artifact.clone().unwrap_or_default();
                match crate::tuf::target_for_deployment(
                    agent,
                    &client.http,
                    &client.headers(),
                    &client.base,
                    &deployment.json,
                    &artifact,
                ) {
                    Ok(target) => {
                        deployment.tuf = target;
                        Event::TufChecked(Ok(()))
                    }
                    Err(e) => Event::TufChecked(Err(e.to_string())),
                }
            }
            Request::Install { action_id } => {
                let deployment = self.deployment.take().ok_or_else(no_deployment)?;
                super::download::install(self.agent, client, &action_id, deployment)?
            }
        })
    }

    fn perform(&mut self, machine: &Machine, effect: Effect) -> Result<(), DdiError> {
        match effect {
            Effect::Store => self.agent.store_state(&machine.record)?,
            Effect::Notify(feedback) => {
                let _ = send(self.client, &feedback);
            }
            Effect::SendAttributes {
                attributes,
                requested,
            } => {
                let sent = self.client.sent_attributes.borrow().as_ref() == Some(&attributes);
                if requested || !sent {
                    // Not fatal: the server then offers full bundles rather than deltas.
                    if let Err(e) = self.client.send_attributes(&attributes) {
                        eprintln!("keel-agent: {e}");
                    }
                }
            }
            Effect::Reboot => {
                if let Some(reboot) = self.agent.config.reboot_command.clone() {
                    let _ = run_health_check(&reboot);
                }
            }
        }
        Ok(())
    }
}

fn send(client: &DdiClient, feedback: &Feedback) -> Result<bool, DdiError> {
    client.feedback(
        &feedback.action_id,
        feedback.execution,
        feedback.finished,
        feedback.progress,
        &feedback.details,
    )
}

fn no_deployment() -> DdiError {
    DdiError::Response {
        url: String::new(),
        message: "no deployment fetched in this cycle".into(),
    }
}

fn fetch_deployment(client: &DdiClient, href: &str) -> Result<(Offer, Deployment), DdiError> {
    let json = client.get_json(href)?;
    let action_id = match &json["id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(DdiError::Response {
                url: href.to_string(),
                message: "deploymentBase without id".into(),
            })
        }
    };
    let found = json["deployment"]["chunks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            let artifacts = c["artifacts"].as_array().cloned().unwrap_or_default();
            artifacts
                .clone()
                .into_iter()
                .map(move |a| (a, artifacts.clone()))
        })
        .find(|(a, _)| a["filename"].as_str().is_some_and(|f| f.ends_with(".swu")));
    let packs = PackSource::Named {
        urls: found
            .iter()
            .flat_map(|(_, siblings)| siblings)
            .filter_map(|a| Some((a["filename"].as_str()?.to_string(), download_url(a)?)))
            .collect(),
        headers: client.headers(),
    };
    let artifact = found.map(|(a, _)| a);
    let offer = Offer {
        action_id,
        skip: json["deployment"]["update"].as_str() == Some("skip"),
        artifact: artifact.as_ref().map(|a| {
            (
                a["filename"].as_str().unwrap_or("bundle.swu").to_string(),
                a["size"].as_u64().unwrap_or(0),
            )
        }),
    };
    let deployment = Deployment {
        json,
        artifact,
        packs,
        tuf: None,
    };
    Ok((offer, deployment))
}

pub(super) fn download_url(artifact: &Value) -> Option<String> {
    artifact["_links"]["download-http"]["href"]
        .as_str()
        .or(artifact["_links"]["download"]["href"].as_str())
        .map(str::to_string)
}
