//! Offers and installs.

use super::*;

#[test]
fn an_interrupted_action_offered_again_is_reported_and_installed_again() {
    let mut run = Run::start(interrupted("9", false), false);
    run.poll(offered("9"));
    run.answer(offer("9"));
    let feedback = run.feedback();
    assert_eq!(
        (feedback.execution, feedback.finished),
        ("proceeding", "none")
    );
    assert!(
        feedback
            .details
            .starts_with("keel-agent: install attempt 1 of 3 was interrupted (power loss or crash) before slot B was activated; slot A still runs"),
        "{}",
        feedback.details
    );
    run.answer(Event::Feedback(Some(true)));
    assert_eq!(run.effects, [Effect::Store]);
    assert!(run.machine.record.interrupted.as_ref().unwrap().reported);
    assert_eq!(run.request, Some(Request::CheckTuf));
    run.answer(Event::TufChecked(Ok(())));
    assert_eq!(run.feedback().progress, Some((0, 100)));
    assert_eq!(
        run.feedback().details,
        "downloading and installing os.swu (1000 bytes) into the inactive slot (attempt 2 of 3, the previous one was interrupted)"
    );
    run.answer(Event::Feedback(Some(true)));
    assert_eq!(
        run.request,
        Some(Request::Install {
            action_id: "9".into()
        })
    );
    run.answer(Event::Installed {
        target: SlotId::B,
        summary: String::new(),
    });
    assert_eq!(run.feedback().progress, Some((100, 100)));
    run.answer(Event::Feedback(Some(true)));
    assert_eq!(run.effects, [Effect::Reboot]);
    assert_eq!(
        run.done().0,
        [
            CycleEvent::Interrupted {
                action_id: "9".into(),
                attempt: 1,
                limit: 3
            },
            CycleEvent::Installed {
                action_id: "9".into()
            }
        ]
    );
    assert_eq!(run.stores, 1);
}

#[test]
fn an_action_closed_meanwhile_forgets_the_interruption() {
    let mut run = Run::start(interrupted("9", false), false);
    run.poll(offered("9"));
    run.answer(offer("9"));
    run.answer(Event::Feedback(Some(false)));
    assert_eq!(run.machine.record.interrupted, None);
    assert_eq!(run.request, Some(Request::CheckTuf));
}

#[test]
fn another_action_replaces_the_interrupted_one() {
    let mut run = Run::start(interrupted("9", true), false);
    run.poll(offered("10"));
    run.answer(offer("10"));
    assert_eq!(run.effects, [Effect::Store]);
    assert_eq!(
        run.machine.events,
        [CycleEvent::InterruptedDropped("9".into())]
    );
    assert_eq!(run.request, Some(Request::CheckTuf));
}

#[test]
fn offers_that_are_not_installed() {
    // The action installed before the reboot: wait for its test boot.
    let mut run = Run::start(pending("3", SlotId::B), false);
    run.poll(offered("3"));
    run.answer(offer("3"));
    assert_eq!(run.done().0, []);

    let mut run = Run::start(AgentState::default(), false);
    run.poll(offered("4"));
    run.answer(Event::Offered(Offer {
        action_id: "4".into(),
        skip: true,
        artifact: None,
    }));
    assert_eq!(run.done().0, []);

    let mut run = Run::start(interrupted("4", true), false);
    run.poll(offered("4"));
    run.answer(Event::Offered(Offer {
        action_id: "4".into(),
        skip: false,
        artifact: None,
    }));
    assert_eq!(run.feedback().details, "no .swu artifact in the deployment");
    assert_eq!(run.feedback().finished, "failure");
    run.answer(Event::Feedback(Some(true)));
    assert_eq!(run.machine.record.interrupted, None);
    assert_eq!(
        run.done().0,
        [CycleEvent::InstallFailed {
            action_id: "4".into(),
            message: "no .swu artifact".into()
        }]
    );

    let mut run = Run::start(AgentState::default(), false);
    run.poll(offered("6"));
    run.answer(offer("6"));
    run.answer(Event::TufChecked(Err("not a current TUF target".into())));
    let message = "refusing os.swu: not a current TUF target";
    assert_eq!(run.feedback().details, message);
    run.answer(Event::Feedback(Some(true)));
    assert_eq!(
        run.done().0,
        [CycleEvent::InstallFailed {
            action_id: "6".into(),
            message: message.into()
        }]
    );
}

/// Run an offer of action 8 up to the install's answer.
fn installing() -> Run {
    let mut run = Run::start(AgentState::default(), false);
    run.poll(offered("8"));
    run.answer(offer("8"));
    run.answer(Event::TufChecked(Ok(())));
    run.answer(Event::Feedback(Some(true)));
    run
}

#[test]
fn a_failed_install_is_closed_with_the_failure_it_recorded() {
    let mut run = installing();
    let record = AgentState {
        last_result: Some(result("8", Outcome::Failed)),
        ..Default::default()
    };
    run.answer(Event::InstallFailed {
        message: "image r: sha256 mismatch".into(),
        record,
    });
    assert!(
        matches!(&run.request, Some(Request::TryFeedback(f)) if f.details == "keel-agent: failed (slot B): why")
    );
    run.answer(Event::Feedback(Some(true)));
    assert_eq!(run.effects, [Effect::Store]);
    let expected = [CycleEvent::InstallFailed {
        action_id: "8".into(),
        message: "image r: sha256 mismatch".into(),
    }];
    assert_eq!(run.done().0, expected);

    // The recorded failure did not go out: the error itself closes the action.
    let mut run = installing();
    run.answer(Event::InstallFailed {
        message: "image r: sha256 mismatch".into(),
        record: AgentState {
            last_result: Some(result("8", Outcome::Failed)),
            ..Default::default()
        },
    });
    run.answer(Event::Feedback(None));
    assert!(run.effects.is_empty());
    assert!(
        matches!(&run.request, Some(Request::Feedback(f)) if f.details == "image r: sha256 mismatch")
    );
    run.answer(Event::Feedback(Some(true)));
    assert_eq!(run.done().0, expected);

    // Nothing recorded (refused before the transaction began).
    let mut run = installing();
    run.answer(Event::InstallFailed {
        message: "bundle is not signed".into(),
        record: AgentState::default(),
    });
    assert_eq!(run.feedback().details, "bundle is not signed");
    assert_eq!(run.feedback().finished, "failure");
}

#[test]
fn a_busy_agent_is_not_the_actions_failure() {
    let mut run = installing();
    run.answer(Event::InstallBusy(
        "another keel-agent holds the lock".into(),
    ));
    assert!(run.effects.is_empty());
    assert!(matches!(
        &run.done().0[..],
        [CycleEvent::InstallFailed { .. }]
    ));
}

#[test]
fn states_read_as_words() {
    assert_eq!(State::Reconciling.to_string(), "reconciling");
    let state = State::Installing {
        action_id: "8".into(),
    };
    assert_eq!(state.to_string(), "installing action 8");
}
