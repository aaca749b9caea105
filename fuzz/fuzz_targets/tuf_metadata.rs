//! Arbitrary bytes as TUF metadata, verified against a fixed trusted repository (the test vectors in
//! crates/tuf/tests/vectors). The first byte picks the role the remaining bytes are fed as:
//! 0 trusted root, 1 new root, 2 timestamp, 3 snapshot, 4 targets, 5 a delegated role, 6 plain parsing.
//! Nothing may panic; every rejection must be an error.

#![no_main]

use keel_tuf::metadata::{Metadata, Targets};
use keel_tuf::TrustedMetadataSet;
use libfuzzer_sys::fuzz_target;

const ROOT: &[u8] = include_bytes!("../../crates/tuf/tests/vectors/1.root.json");
const TIMESTAMP: &[u8] = include_bytes!("../../crates/tuf/tests/vectors/timestamp.json");
const SNAPSHOT: &[u8] = include_bytes!("../../crates/tuf/tests/vectors/1.snapshot.json");
const TARGETS: &[u8] = include_bytes!("../../crates/tuf/tests/vectors/1.targets.json");
const NOW: i64 = 4_000_000_000;

fn trusted() -> TrustedMetadataSet {
    TrustedMetadataSet::new(ROOT, NOW).expect("vector root verifies")
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    match selector % 7 {
        0 => {
            let _ = TrustedMetadataSet::new(data, NOW);
        }
        1 => {
            let _ = trusted().update_root(data);
        }
        2 => {
            let mut set = trusted();
            if set.update_timestamp(data).is_ok() {
                let _ = set.update_snapshot(SNAPSHOT, false);
            }
        }
        3 => {
            let mut set = trusted();
            set.update_timestamp(TIMESTAMP)
                .expect("vector timestamp verifies");
            let _ = set.update_snapshot(data, false);
            let _ = set.update_snapshot(data, true);
        }
        4 => {
            let mut set = trusted();
            set.update_timestamp(TIMESTAMP)
                .expect("vector timestamp verifies");
            set.update_snapshot(SNAPSHOT, false)
                .expect("vector snapshot verifies");
            let _ = set.update_targets(data, "targets", "root");
        }
        5 => {
            let mut set = trusted();
            set.update_timestamp(TIMESTAMP)
                .expect("vector timestamp verifies");
            set.update_snapshot(SNAPSHOT, false)
                .expect("vector snapshot verifies");
            set.update_targets(TARGETS, "targets", "root")
                .expect("vector targets verify");
            let _ = set.update_targets(data, "bin-0", "targets");
            // Parsed (unverified) delegations must be searchable without panicking.
            if let Ok(parsed) = Metadata::<Targets>::from_bytes("fuzz", data) {
                if let Some(delegations) = &parsed.signed.delegations {
                    for target in ["a/b.swu", "", "x", "images/fw-1.swu"] {
                        for (role, _) in delegations.roles_for_target(target) {
                            let _ = delegations.role_keys(&role);
                        }
                    }
                }
            }
        }
        _ => {
            // Parsing canonicalizes the `signed` value of any role type.
            let _ = Metadata::<keel_tuf::metadata::Root>::from_bytes("fuzz", data);
            let _ = Metadata::<keel_tuf::metadata::Timestamp>::from_bytes("fuzz", data);
            let _ = Metadata::<keel_tuf::metadata::Snapshot>::from_bytes("fuzz", data);
        }
    }
});
