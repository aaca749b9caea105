//! hawkBit DDI client (`keel-agent run`).

use crate::agent::Agent;

#[derive(Debug, thiserror::Error)]
pub enum DdiError {
    #[error("no [ddi] section in the configuration")]
    NotConfigured,
}

pub fn run(agent: &mut Agent, _once: bool) -> Result<(), DdiError> {
    if agent.config.ddi.is_none() {
        return Err(DdiError::NotConfigured);
    }
    Err(DdiError::NotConfigured)
}
