//! The device agent: streaming A/B install, bootloader state machine, confirm and rollback.
