//! Device and fleet simulator for tests: file-backed slots, bootloader model, power-cut injection.
