//! The cycle's transitions, fed events directly (no server, no storage): reconcile, test
//! boot, results, attributes and cancels here; offers and installs in `offers.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::config::SlotId;
use crate::state::{AgentState, Outcome, SlotImage};
use crate::state::{InterruptedAction, LastResult, Phase, Transaction};

const POLL: Duration = Duration::from_secs(300);

/// A cycle under test: the machine, the request it made last, the effects of the last step and
/// how many times it stored the state file so far.
struct Run {
    machine: Machine,
    request: Option<Request>,
    effects: Vec<Effect>,
    stores: usize,
}

impl Run {
    /// A cycle on slot A whose reconcile found `record`.
    fn start(record: AgentState, testing: bool) -> Run {
        let settings = Settings {
            max_interrupted_attempts: 3,
            poll: POLL,
        };
        let (machine, request) = Machine::start(settings);
        assert_eq!(request, Request::Reconcile);
        let mut run = Run {
            machine,
            request: Some(request),
            effects: Vec::new(),
            stores: 0,
        };
        run.answer(Event::Reconciled {
            record,
            booted: SlotId::A,
            testing,
        });
        run
    }

    fn answer(&mut self, event: Event) -> &mut Run {
        assert!(
            self.request.is_some(),
            "the cycle is over: {:?}",
            self.machine.state
        );
        let (machine, output) = self.machine.clone().step(event);
        self.machine = machine;
        self.request = output.request;
        self.stores += output
            .effects
            .iter()
            .filter(|e| **e == Effect::Store)
            .count();
        self.effects = output.effects;
        self
    }

    /// Answer the reconcile-to-poll part of an ordinary cycle; returns at the poll's answer.
    fn poll(&mut self, poll: Poll) -> &mut Run {
        assert_eq!(self.request, Some(Request::FactoryImages));
        self.answer(Event::FactoryImages(BTreeMap::new()));
        assert_eq!(self.request, Some(Request::Poll));
        self.answer(Event::Polled(poll))
    }

    fn feedback(&self) -> &Feedback {
        match &self.request {
            Some(Request::Feedback(f) | Request::TryFeedback(f)) => f,
            other => panic!("expected feedback, got {other:?}"),
        }
    }

    fn done(&self) -> (Vec<CycleEvent>, Duration) {
        assert_eq!(self.request, None);
        assert_eq!(self.machine.state, State::Done);
        self.machine.clone().finish()
    }
}

fn offered(action_id: &str) -> Poll {
    Poll {
        deployment: Some(format!("/deploymentBase/{action_id}")),
        ..Default::default()
    }
}

fn offer(action_id: &str) -> Event {
    Event::Offered(Offer {
        action_id: action_id.into(),
        skip: false,
        artifact: Some(("os.swu".into(), 1000)),
    })
}

fn interrupted(action_id: &str, reported: bool) -> AgentState {
    AgentState {
        interrupted: Some(InterruptedAction {
            action_id: action_id.into(),
            attempts: 1,
            target_slot: SlotId::B,
            version: None,
            message: "cut".into(),
            interrupted_at: 0,
            reported,
        }),
        ..Default::default()
    }
}

/// An activated transaction of `action_id` into `target`.
fn pending(action_id: &str, target: SlotId) -> AgentState {
    AgentState {
        transaction: Some(Transaction {
            phase: Phase::Activated,
            from_slot: target.other(),
            target_slot: target,
            version: None,
            action_id: Some(action_id.into()),
            started_at: 0,
            boot_id: None,
        }),
        ..Default::default()
    }
}

fn result(action_id: &str, outcome: Outcome) -> LastResult {
    LastResult {
        outcome,
        target_slot: SlotId::B,
        version: None,
        action_id: Some(action_id.into()),
        message: "why".into(),
        finished_at: 0,
        reported: false,
    }
}

#[test]
fn nothing_offered_is_idle_and_stores_nothing() {
    let mut run = Run::start(AgentState::default(), false);
    run.poll(Poll {
        sleep: Some(Duration::from_secs(7)),
        ..Default::default()
    });
    assert!(matches!(
        &run.effects[..],
        [Effect::SendAttributes { requested: false, attributes }] if attributes["keel.slot"] == "A"
    ));
    assert_eq!(run.done(), (vec![CycleEvent::Idle], Duration::from_secs(7)));
    assert_eq!(run.stores, 0);
}

#[test]
fn factory_images_learned_are_stored_once_and_sent() {
    let mut run = Run::start(AgentState::default(), false);
    let image = SlotImage {
        sha256: "ab".into(),
        size: 4,
        version: None,
    };
    run.answer(Event::FactoryImages(BTreeMap::from([(
        "rootfs".to_string(),
        image.clone(),
    )])));
    assert_eq!(run.effects, [Effect::Store]);
    assert_eq!(run.machine.record.slots[&SlotId::A]["rootfs"], image);
    run.answer(Event::Polled(Poll::default()));
    assert!(matches!(
        &run.effects[..],
        [Effect::SendAttributes { attributes, .. }] if attributes["keel.slot.rootfs.sha256"] == "ab"
    ));
}

#[test]
fn a_test_boot_is_confirmed_and_its_result_reported_once() {
    let mut run = Run::start(pending("7", SlotId::A), true);
    assert_eq!(run.request, Some(Request::Confirm));
    let confirmed = AgentState {
        last_result: Some(result("7", Outcome::Success)),
        ..Default::default()
    };
    run.answer(Event::Confirmed { record: confirmed });
    let feedback = run.feedback();
    assert_eq!(
        (
            feedback.action_id.as_str(),
            feedback.execution,
            feedback.finished
        ),
        ("7", "closed", "success")
    );
    assert_eq!(feedback.details, "keel-agent: success (slot B): why");
    // 410 (closed already) counts as reported too.
    run.answer(Event::Feedback(Some(false)));
    assert_eq!(run.effects, [Effect::Store]);
    assert!(run.machine.record.last_result.as_ref().unwrap().reported);
    run.poll(Poll::default());
    let (events, sleep) = run.done();
    assert_eq!(
        events,
        [
            CycleEvent::Confirmed("A".into()),
            CycleEvent::Reported {
                action_id: "7".into(),
                outcome: Outcome::Success
            }
        ]
    );
    assert_eq!((sleep, run.stores), (POLL, 1));
}

#[test]
fn a_failed_health_check_leaves_the_slot_on_trial_and_reboots() {
    let mut run = Run::start(pending("7", SlotId::A), true);
    run.answer(Event::HealthCheckFailed("exit status 1".into()));
    assert!(matches!(
        &run.effects[..],
        [Effect::Notify(f), Effect::Reboot] if f.action_id == "7" && f.execution == "proceeding"
    ));
    let (events, sleep) = run.done();
    assert_eq!(
        events,
        [CycleEvent::HealthCheckFailed("exit status 1".into())]
    );
    assert_eq!((sleep, run.stores), (POLL, 0));
}

#[test]
fn a_cancel_is_acknowledged_and_forgets_its_interrupted_install() {
    let mut run = Run::start(interrupted("5", true), false);
    run.poll(Poll {
        cancel: Some("/cancelAction/5".into()),
        ..Default::default()
    });
    assert_eq!(
        run.request,
        Some(Request::FetchCancel("/cancelAction/5".into()))
    );
    run.answer(Event::CancelFetched {
        stop_id: "5".into(),
    });
    assert_eq!(run.request, Some(Request::AckCancel("5".into())));
    run.answer(Event::Feedback(Some(true)));
    assert_eq!(run.machine.record.interrupted, None);
    assert_eq!(
        run.done().0,
        [
            CycleEvent::InterruptedDropped("5".into()),
            CycleEvent::CancelAcknowledged("5".into())
        ]
    );
    assert_eq!(run.stores, 1);
}

mod offers;
