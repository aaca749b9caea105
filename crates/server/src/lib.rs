//! The fleet server: hawkBit DDI device API, management API, rollouts, TUF repository.
