//! The transition function of the cycle (see the module docs of `machine`).

use std::collections::BTreeMap;

use super::{Effect, Event, Feedback, Machine, Offer, Output, Poll, Request, State};
use crate::ddi::attributes::attributes;
use crate::ddi::CycleEvent;
use crate::state::Outcome;

impl Machine {
    /// The transition function.
    pub fn step(mut self, event: Event) -> (Machine, Output) {
        let mut out = Output::default();
        let state = std::mem::replace(&mut self.state, State::Done);
        self.state = self.transition(state, event, &mut out);
        (self, out)
    }

    fn transition(&mut self, state: State, event: Event, out: &mut Output) -> State {
        use {Event as E, State as S};
        match (state, event) {
            (
                S::Reconciling,
                E::Reconciled {
                    record,
                    booted,
                    testing,
                },
            ) => {
                self.pending_action = record
                    .transaction
                    .as_ref()
                    .and_then(|t| t.action_id.clone());
                self.record = record;
                self.booted = booted;
                if testing {
                    out.request = Some(Request::Confirm);
                    return S::Confirming;
                }
                self.report_result(out)
            }
            (S::Confirming, E::Confirmed { record }) => {
                self.record = record;
                self.events
                    .push(CycleEvent::Confirmed(self.booted.to_string()));
                self.report_result(out)
            }
            (S::Confirming, E::HealthCheckFailed(message)) => {
                // The slot stays on trial: the next boot falls back, and that is reported.
                if let Some(id) = &self.pending_action {
                    let feedback = Feedback::proceeding(id, None, message.clone());
                    out.effects.push(Effect::Notify(feedback));
                }
                self.events.push(CycleEvent::HealthCheckFailed(message));
                out.effects.push(Effect::Reboot);
                self.sleep = self.settings.poll;
                S::Done
            }
            (S::ReportingResult, E::Feedback(_)) => {
                // 200 or 410 (closed already): either way nothing is left to send.
                if let Some(result) = self.record.last_result.as_mut() {
                    result.reported = true;
                    self.events.push(CycleEvent::Reported {
                        action_id: result.action_id.clone().unwrap_or_default(),
                        outcome: result.outcome,
                    });
                }
                out.effects.push(Effect::Store);
                out.request = Some(Request::FactoryImages);
                S::Describing
            }
            (S::Describing, E::FactoryImages(learned)) => {
                if !learned.is_empty() {
                    let records = self.record.slots.entry(self.booted).or_default();
                    records.extend(learned);
                    out.effects.push(Effect::Store);
                }
                out.request = Some(Request::Poll);
                S::Polling {
                    attributes: attributes(self.booted, &self.record),
                }
            }
            (S::Polling { attributes }, E::Polled(poll)) => self.polled(attributes, poll, out),
            (S::FetchingCancel, E::CancelFetched { stop_id }) => {
                // An action already installed and awaiting its reboot cannot be taken back here.
                if self.pending_action.as_deref() == Some(stop_id.as_str()) {
                    return S::Done;
                }
                out.request = Some(Request::AckCancel(stop_id.clone()));
                S::AckingCancel { stop_id }
            }
            (S::AckingCancel { stop_id }, E::Feedback(_)) => {
                if self.interrupted_action() == Some(stop_id.as_str()) {
                    self.drop_interrupted(out);
                }
                self.events.push(CycleEvent::CancelAcknowledged(stop_id));
                S::Done
            }
            (S::FetchingDeployment, E::Offered(offer)) => self.offered(offer, out),
            (S::ReportingInterruption { offer }, E::Feedback(open)) => {
                let limit = self.settings.max_interrupted_attempts;
                if let Some(record) = self.record.interrupted.take() {
                    self.events.push(CycleEvent::Interrupted {
                        action_id: record.action_id.clone(),
                        attempt: record.attempts,
                        limit,
                    });
                    // 410: the action was closed meanwhile; nothing to resume.
                    if open == Some(true) {
                        self.record.interrupted = Some(crate::state::InterruptedAction {
                            reported: true,
                            ..record
                        });
                    }
                    out.effects.push(Effect::Store);
                }
                self.consider(offer, out)
            }
            (S::CheckingTuf { offer, retry }, E::TufChecked(Ok(()))) => {
                let (filename, size) = offer.artifact.unwrap_or_default();
                let details = format!(
                    "downloading and installing {filename} ({size} bytes) into the inactive slot{retry}"
                );
                let feedback = Feedback::proceeding(&offer.action_id, Some((0, 100)), details);
                out.request = Some(Request::Feedback(feedback));
                S::Announcing {
                    action_id: offer.action_id,
                }
            }
            (S::CheckingTuf { offer, .. }, E::TufChecked(Err(reason))) => {
                let (filename, _) = offer.artifact.unwrap_or_default();
                let message = format!("refusing {filename}: {reason}");
                self.refuse(offer.action_id, message.clone(), message, out)
            }
            (S::Refusing { action_id, message }, E::Feedback(_)) => {
                if self.record.interrupted.is_some() {
                    self.record.interrupted = None;
                    out.effects.push(Effect::Store);
                }
                self.events
                    .push(CycleEvent::InstallFailed { action_id, message });
                S::Done
            }
            (S::Announcing { action_id }, E::Feedback(_)) => {
                out.request = Some(Request::Install {
                    action_id: action_id.clone(),
                });
                S::Installing { action_id }
            }
            (S::Installing { action_id }, E::Installed { target, summary }) => {
                let details = format!(
                    "installed into slot {target}; rebooting to test it (the result follows after the reboot){summary}"
                );
                let feedback = Feedback::proceeding(&action_id, Some((100, 100)), details);
                out.request = Some(Request::Feedback(feedback));
                S::ReportingInstalled { action_id }
            }
            (S::ReportingInstalled { action_id }, E::Feedback(_)) => {
                self.events.push(CycleEvent::Installed { action_id });
                out.effects.push(Effect::Reboot);
                S::Done
            }
            (S::Installing { action_id }, E::InstallBusy(message)) => {
                // The deployment is offered again at the next poll.
                self.events
                    .push(CycleEvent::InstallFailed { action_id, message });
                S::Done
            }
            (S::Installing { action_id }, E::InstallFailed { message, record }) => {
                self.record = record;
                match self.result_feedback() {
                    Some(feedback) => {
                        out.request = Some(Request::TryFeedback(feedback));
                        S::ReportingFailure { action_id, message }
                    }
                    None => self.close_failure(action_id, message, out),
                }
            }
            (S::ReportingFailure { action_id, message }, E::Feedback(answer)) => {
                if answer.is_some() {
                    if let Some(result) = self.record.last_result.as_mut() {
                        result.reported = true;
                    }
                    out.effects.push(Effect::Store);
                }
                self.close_failure(action_id, message, out)
            }
            (S::ClosingFailure { action_id, message }, E::Feedback(_)) => {
                self.events
                    .push(CycleEvent::InstallFailed { action_id, message });
                S::Done
            }
            // The driver answers each request with its event; anything else ends the cycle.
            (_, _) => S::Done,
        }
    }

    /// `closed` feedback for the last result, if it belongs to an action and was not reported.
    fn result_feedback(&self) -> Option<Feedback> {
        let result = self.record.last_result.as_ref().filter(|r| !r.reported)?;
        let action_id = result.action_id.as_deref()?;
        let details = format!(
            "keel-agent: {} (slot {}): {}",
            result.outcome.as_str(),
            result.target_slot,
            result.message
        );
        Some(Feedback {
            action_id: action_id.to_string(),
            execution: "closed",
            finished: if result.outcome == Outcome::Success {
                "success"
            } else {
                "failure"
            },
            progress: None,
            details,
        })
    }

    fn report_result(&mut self, out: &mut Output) -> State {
        match self.result_feedback() {
            Some(feedback) => {
                out.request = Some(Request::Feedback(feedback));
                State::ReportingResult
            }
            None => {
                out.request = Some(Request::FactoryImages);
                State::Describing
            }
        }
    }

    fn polled(
        &mut self,
        attributes: BTreeMap<String, String>,
        poll: Poll,
        out: &mut Output,
    ) -> State {
        if let Some(sleep) = poll.sleep {
            self.sleep = sleep;
        }
        // Not fatal when it fails: the server then offers full bundles rather than deltas.
        out.effects.push(Effect::SendAttributes {
            attributes,
            requested: poll.attributes_requested,
        });
        if let Some(href) = poll.cancel {
            out.request = Some(Request::FetchCancel(href));
            return State::FetchingCancel;
        }
        if let Some(href) = poll.deployment {
            out.request = Some(Request::FetchDeployment(href));
            return State::FetchingDeployment;
        }
        // Nothing offered: an interrupted action was cancelled or replaced.
        self.drop_interrupted(out);
        if self.events.is_empty() {
            self.events.push(CycleEvent::Idle);
        }
        State::Done
    }

    fn offered(&mut self, offer: Offer, out: &mut Output) -> State {
        if self.pending_action.as_deref() == Some(offer.action_id.as_str()) {
            // Installed already; waiting for the reboot / test boot of this very action.
            return State::Done;
        }
        if self
            .interrupted_action()
            .is_some_and(|id| id != offer.action_id)
        {
            self.drop_interrupted(out);
        }
        // Offered again: say that the last attempt was cut off (a cancelled or replaced action
        // is not told, its record is dropped above or with the cancel).
        if let Some(record) = self.record.interrupted.as_ref().filter(|i| !i.reported) {
            let details = format!(
                "keel-agent: install attempt {} of {} was interrupted (power loss or crash) before \
                 slot {} was activated; slot {} still runs; installing again: {}",
                record.attempts,
                self.settings.max_interrupted_attempts,
                record.target_slot,
                self.booted,
                record.message
            );
            let feedback = Feedback::proceeding(&record.action_id, None, details);
            out.request = Some(Request::Feedback(feedback));
            return State::ReportingInterruption { offer };
        }
        self.consider(offer, out)
    }

    /// An offer whose interrupted attempts are accounted for: install, skip or refuse it.
    fn consider(&mut self, offer: Offer, out: &mut Output) -> State {
        // Earlier attempts of this action that were cut off before activation.
        let retry = self
            .record
            .interrupted
            .as_ref()
            .map(|i| {
                format!(
                    " (attempt {} of {}, the previous one was interrupted)",
                    i.attempts.saturating_add(1),
                    self.settings.max_interrupted_attempts
                )
            })
            .unwrap_or_default();
        if offer.skip {
            return State::Done;
        }
        if offer.artifact.is_none() {
            let details = "no .swu artifact in the deployment".to_string();
            return self.refuse(offer.action_id, details, "no .swu artifact".into(), out);
        }
        out.request = Some(Request::CheckTuf);
        State::CheckingTuf { offer, retry }
    }

    fn refuse(
        &mut self,
        action_id: String,
        details: String,
        message: String,
        out: &mut Output,
    ) -> State {
        out.request = Some(Request::Feedback(Feedback::failure(&action_id, details)));
        State::Refusing { action_id, message }
    }

    fn close_failure(&mut self, action_id: String, message: String, out: &mut Output) -> State {
        let reported = self
            .record
            .last_result
            .as_ref()
            .is_some_and(|r| r.reported && r.action_id.as_deref() == Some(action_id.as_str()));
        if reported {
            self.events
                .push(CycleEvent::InstallFailed { action_id, message });
            return State::Done;
        }
        let feedback = Feedback::failure(&action_id, message.clone());
        out.request = Some(Request::Feedback(feedback));
        State::ClosingFailure { action_id, message }
    }

    fn interrupted_action(&self) -> Option<&str> {
        self.record
            .interrupted
            .as_ref()
            .map(|i| i.action_id.as_str())
    }

    /// Forget the interrupted install (its action is no longer offered).
    fn drop_interrupted(&mut self, out: &mut Output) {
        if let Some(record) = self.record.interrupted.take() {
            out.effects.push(Effect::Store);
            self.events
                .push(CycleEvent::InterruptedDropped(record.action_id));
        }
    }
}
