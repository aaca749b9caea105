//! After a (re)boot: what became of the transaction recorded in the state file.
//!
//! A pure function of the recorded transaction, the booted slot and the bootloader's view, so
//! every combination is unit-tested.

use crate::bootloader::{BootView, UState};
use crate::config::SlotId;
use crate::state::{Phase, Transaction};

/// What became of a recorded transaction, as [`reconcile`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An install is running in this very boot (another agent process): leave it alone.
    InProgress,
    /// Activated; the bootloader boots the target on the next boot.
    AwaitingReboot,
    /// The target is booted for its test; it needs `confirm`.
    Testing,
    /// The target is booted and marked good.
    Success,
    /// The bootloader fell back to the old slot.
    RolledBack(String),
    /// The install never reached activation.
    Failed(String),
}

/// `same_boot`: the transaction was started during the current boot (boot id unchanged).
pub fn reconcile(tx: &Transaction, booted: SlotId, view: &BootView, same_boot: bool) -> Verdict {
    let activated_in_env = view.failed == Some(tx.target_slot)
        || (view.next_boot == Some(tx.target_slot) && view.ustate == UState::Installed);
    let phase = match tx.phase {
        Phase::Installing if same_boot => return Verdict::InProgress,
        Phase::Installing => {
            return Verdict::Failed(
                "install interrupted (power loss or crash); the target slot was never activated"
                    .into(),
            )
        }
        Phase::Activating if activated_in_env || booted == tx.target_slot => Phase::Activated,
        Phase::Activating if same_boot => return Verdict::InProgress,
        Phase::Activating => return Verdict::Failed(
            "interrupted before the bootloader was switched; the target slot was never activated"
                .into(),
        ),
        Phase::Activated => Phase::Activated,
    };
    debug_assert_eq!(phase, Phase::Activated);
    if booted == tx.target_slot && booted != tx.from_slot {
        return match view.ustate {
            UState::Ok => Verdict::Success,
            _ => Verdict::Testing,
        };
    }
    if view.next_boot == Some(tx.target_slot) && view.ustate == UState::Installed {
        return Verdict::AwaitingReboot;
    }
    Verdict::RolledBack(format!(
        "slot {} did not boot successfully; the bootloader fell back to slot {booted}",
        tx.target_slot
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn tx(phase: Phase) -> Transaction {
        Transaction {
            phase,
            from_slot: SlotId::A,
            target_slot: SlotId::B,
            version: None,
            action_id: None,
            started_at: 0,
            boot_id: None,
        }
    }

    fn view(next: SlotId, ustate: UState, failed: Option<SlotId>) -> BootView {
        BootView {
            next_boot: Some(next),
            booted: None,
            ustate,
            failed,
            details: BTreeMap::new(),
        }
    }

    #[test]
    fn installed_then_testing_then_success() {
        let t = tx(Phase::Activated);
        assert_eq!(
            reconcile(
                &t,
                SlotId::A,
                &view(SlotId::B, UState::Installed, None),
                true
            ),
            Verdict::AwaitingReboot
        );
        assert_eq!(
            reconcile(
                &t,
                SlotId::B,
                &view(SlotId::B, UState::Testing, None),
                false
            ),
            Verdict::Testing
        );
        assert_eq!(
            reconcile(&t, SlotId::B, &view(SlotId::B, UState::Ok, None), false),
            Verdict::Success
        );
    }

    #[test]
    fn fallback_is_a_rollback() {
        let t = tx(Phase::Activated);
        let v = view(SlotId::A, UState::Ok, Some(SlotId::B));
        assert!(matches!(
            reconcile(&t, SlotId::A, &v, false),
            Verdict::RolledBack(_)
        ));
        // U-Boot style: slot variable back to A, no failed marker.
        let v = view(SlotId::A, UState::Ok, None);
        assert!(matches!(
            reconcile(&t, SlotId::A, &v, false),
            Verdict::RolledBack(_)
        ));
    }

    #[test]
    fn interrupted_phases() {
        let v = view(SlotId::A, UState::Ok, None);
        assert_eq!(
            reconcile(&tx(Phase::Installing), SlotId::A, &v, true),
            Verdict::InProgress
        );
        assert!(matches!(
            reconcile(&tx(Phase::Installing), SlotId::A, &v, false),
            Verdict::Failed(_)
        ));
        assert!(matches!(
            reconcile(&tx(Phase::Activating), SlotId::A, &v, false),
            Verdict::Failed(_)
        ));
        // The env commit happened just before the power cut: it counts as activated.
        let installed = view(SlotId::B, UState::Installed, None);
        assert_eq!(
            reconcile(&tx(Phase::Activating), SlotId::A, &installed, false),
            Verdict::AwaitingReboot
        );
        let tested = view(SlotId::B, UState::Testing, None);
        assert_eq!(
            reconcile(&tx(Phase::Activating), SlotId::B, &tested, false),
            Verdict::Testing
        );
    }
}
