//! The keel command line: bundles, deltas, TUF and fleet management.

fn main() {}
