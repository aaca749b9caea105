//! `TrustedMetadataSet`: the verification state machine over metadata bytes (modelled on python-tuf's
//! `tuf.ngclient._internal.trusted_metadata_set`). It fetches and stores nothing; the `Updater` feeds it.
//!
//! Order: root (any number of updates) → timestamp → snapshot → targets → delegated targets.
//! Expired *intermediate* metadata is accepted only as a rollback floor; the final role of each kind must not be
//! expired at the reference time.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::metadata::{Metadata, RoleKeys, Root, Snapshot, Targets, Timestamp};
use crate::time::format_expires;

/// The verified metadata of one refresh.
#[derive(Debug)]
pub struct TrustedMetadataSet {
    reference_time: i64,
    root: Metadata<Root>,
    timestamp: Option<Metadata<Timestamp>>,
    snapshot: Option<Metadata<Snapshot>>,
    targets: BTreeMap<String, Metadata<Targets>>,
}

impl TrustedMetadataSet {
    /// Starts from a trusted root (shipped with the device or persisted earlier); it must be signed by itself.
    /// Its expiry is checked later, after root updates.
    pub fn new(root_data: &[u8], reference_time: i64) -> Result<Self, Error> {
        let root: Metadata<Root> = Metadata::from_bytes("root", root_data)?;
        verify_root_by(&root, "root", &root)?;
        Ok(TrustedMetadataSet {
            reference_time,
            root,
            timestamp: None,
            snapshot: None,
            targets: BTreeMap::new(),
        })
    }

    /// The reference time every expiry check uses.
    pub fn reference_time(&self) -> i64 {
        self.reference_time
    }

    /// The trusted root.
    pub fn root(&self) -> &Metadata<Root> {
        &self.root
    }

    /// The trusted timestamp, if loaded.
    pub fn timestamp(&self) -> Option<&Metadata<Timestamp>> {
        self.timestamp.as_ref()
    }

    /// The trusted snapshot, if loaded.
    pub fn snapshot(&self) -> Option<&Metadata<Snapshot>> {
        self.snapshot.as_ref()
    }

    /// A trusted targets role (top-level `targets` or a delegated one), if loaded.
    pub fn targets(&self, role: &str) -> Option<&Metadata<Targets>> {
        self.targets.get(role)
    }

    /// Accepts `N+1.root.json`: version exactly trusted + 1, signed by a threshold of the trusted root's root keys
    /// and of its own root keys. Intermediate root expiry is not checked.
    pub fn update_root(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.timestamp.is_some() {
            return Err(Error::Order("root cannot be updated after timestamp"));
        }
        let new_root: Metadata<Root> = Metadata::from_bytes("root", data)?;
        verify_root_by(&new_root, "trusted root", &self.root)?;
        let expected = self.root.version.saturating_add(1);
        if new_root.version != expected {
            return Err(Error::VersionMismatch {
                role: "root".into(),
                expected,
                found: new_root.version,
            });
        }
        verify_root_by(&new_root, "new root itself", &new_root)?;
        self.root = new_root;
        Ok(())
    }

    /// Accepts a timestamp. Returns `SameVersion` when the version equals the trusted one (nothing new).
    /// A new timestamp is kept even if expired (as a rollback floor) but then `Expired` is returned.
    pub fn update_timestamp(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.snapshot.is_some() {
            return Err(Error::Order("timestamp cannot be updated after snapshot"));
        }
        if self.root.is_expired(self.reference_time) {
            return Err(self.expired("root", self.root.expires));
        }
        let new: Metadata<Timestamp> = Metadata::from_bytes("timestamp", data)?;
        self.verify_top_level(&new, "timestamp")?;
        if let Some(trusted) = &self.timestamp {
            if new.version < trusted.version {
                return Err(Error::Rollback {
                    role: "timestamp".into(),
                    trusted: trusted.version,
                    found: new.version,
                });
            }
            if new.version == trusted.version {
                return Err(Error::SameVersion {
                    role: "timestamp".into(),
                    version: new.version,
                });
            }
            let (old_meta, new_meta) =
                (snapshot_meta_version(trusted), snapshot_meta_version(&new));
            if new_meta < old_meta {
                return Err(Error::Rollback {
                    role: "snapshot (meta in timestamp)".into(),
                    trusted: old_meta,
                    found: new_meta,
                });
            }
        }
        let expires = new.expires;
        self.timestamp = Some(new);
        if expires <= self.reference_time {
            return Err(self.expired("timestamp", expires));
        }
        Ok(())
    }

    /// Accepts a snapshot. `trusted_local` skips the hash/length check against the timestamp for bytes that were
    /// verified before (the local copy). A snapshot whose version differs from the timestamp's record, or which
    /// is expired, is kept as a rollback floor but an error is returned.
    pub fn update_snapshot(&mut self, data: &[u8], trusted_local: bool) -> Result<(), Error> {
        let Some(timestamp) = &self.timestamp else {
            return Err(Error::Order("snapshot cannot be loaded before timestamp"));
        };
        if !self.targets.is_empty() {
            return Err(Error::Order("snapshot cannot be updated after targets"));
        }
        if timestamp.is_expired(self.reference_time) {
            return Err(self.expired("timestamp", timestamp.expires));
        }
        let meta = timestamp
            .signed
            .snapshot_meta()
            .ok_or(Error::Order("timestamp without snapshot meta"))?
            .clone();
        if !trusted_local {
            meta.verify("snapshot", data)?;
        }
        let new: Metadata<Snapshot> = Metadata::from_bytes("snapshot", data)?;
        self.verify_top_level(&new, "snapshot")?;
        if let Some(trusted) = &self.snapshot {
            for (name, old) in &trusted.signed.meta {
                let Some(current) = new.signed.meta.get(name) else {
                    return Err(Error::MissingMeta {
                        role: "snapshot".into(),
                        reason: format!(
                            "no longer lists {name} (listed at version {})",
                            old.version
                        ),
                    });
                };
                if current.version < old.version {
                    return Err(Error::Rollback {
                        role: format!("{name} (meta in snapshot)"),
                        trusted: old.version,
                        found: current.version,
                    });
                }
            }
        }
        self.snapshot = Some(new);
        self.check_final_snapshot()
    }

    fn check_final_snapshot(&self) -> Result<(), Error> {
        let (Some(snapshot), Some(timestamp)) = (&self.snapshot, &self.timestamp) else {
            return Err(Error::Order("snapshot not loaded"));
        };
        if snapshot.is_expired(self.reference_time) {
            return Err(self.expired("snapshot", snapshot.expires));
        }
        let expected = snapshot_meta_version(timestamp);
        if snapshot.version != expected {
            return Err(Error::VersionMismatch {
                role: "snapshot".into(),
                expected,
                found: snapshot.version,
            });
        }
        Ok(())
    }

    /// Checks an already trusted targets role against `delegator`'s keys for it: a role reached
    /// through another delegator earlier (a "diamond" delegation, the same role name delegated
    /// by two roles with different keys) has no authority through this one unless it is signed
    /// by a threshold of this delegator's keys for it.
    pub fn verify_loaded_targets(&self, role: &str, delegator: &str) -> Result<(), Error> {
        let loaded = self
            .targets
            .get(role)
            .ok_or(Error::Order("targets role not loaded"))?;
        self.verify_delegated(loaded, role, delegator)
    }

    /// Threshold check of `metadata` for `role` with the keys `delegator` assigns to it.
    fn verify_delegated(
        &self,
        metadata: &Metadata<Targets>,
        role: &str,
        delegator: &str,
    ) -> Result<(), Error> {
        if delegator == "root" {
            let role_keys = top_level_keys(&self.root, role)?;
            return metadata.verify_threshold(role, "root", &self.root.signed.keys, &role_keys);
        }
        let parent = self
            .targets
            .get(delegator)
            .ok_or(Error::Order("delegator not loaded"))?;
        let delegations = parent
            .signed
            .delegations
            .as_ref()
            .ok_or_else(|| Error::MissingMeta {
                role: role.to_string(),
                reason: format!("{delegator} has no delegations"),
            })?;
        let role_keys = delegations
            .role_keys(role)
            .ok_or_else(|| Error::MissingMeta {
                role: role.to_string(),
                reason: format!("{delegator} does not delegate this role"),
            })?;
        metadata.verify_threshold(role, delegator, &delegations.keys, &role_keys)
    }

    /// Accepts the targets role `role`, delegated by `delegator` (`root` for the top-level `targets`).
    pub fn update_targets(
        &mut self,
        data: &[u8],
        role: &str,
        delegator: &str,
    ) -> Result<(), Error> {
        self.check_final_snapshot()?;
        let snapshot = self
            .snapshot
            .as_ref()
            .ok_or(Error::Order("snapshot not loaded"))?;
        let meta_name = format!("{role}.json");
        let meta = snapshot
            .signed
            .meta
            .get(&meta_name)
            .ok_or_else(|| Error::MissingMeta {
                role: role.to_string(),
                reason: "snapshot does not list this role".into(),
            })?;
        meta.verify(role, data)?;
        let new: Metadata<Targets> = Metadata::from_bytes(role, data)?;
        self.verify_delegated(&new, role, delegator)?;
        if new.version != meta.version {
            return Err(Error::VersionMismatch {
                role: role.to_string(),
                expected: meta.version,
                found: new.version,
            });
        }
        if new.is_expired(self.reference_time) {
            return Err(self.expired(role, new.expires));
        }
        self.targets.insert(role.to_string(), new);
        Ok(())
    }

    fn verify_top_level<T: crate::metadata::RoleType>(
        &self,
        metadata: &Metadata<T>,
        role: &str,
    ) -> Result<(), Error> {
        let role_keys = top_level_keys(&self.root, role)?;
        metadata.verify_threshold(role, "root", &self.root.signed.keys, &role_keys)
    }

    fn expired(&self, role: &str, expires: i64) -> Error {
        Error::Expired {
            role: role.to_string(),
            expires: format_expires(expires),
            now: format_expires(self.reference_time),
        }
    }
}

fn snapshot_meta_version(timestamp: &Metadata<Timestamp>) -> u64 {
    timestamp
        .signed
        .snapshot_meta()
        .map_or(0, |meta| meta.version)
}

fn top_level_keys(root: &Metadata<Root>, role: &str) -> Result<RoleKeys, Error> {
    root.signed
        .roles
        .get(role)
        .cloned()
        .ok_or_else(|| Error::MissingMeta {
            role: role.to_string(),
            reason: "root does not define this role".into(),
        })
}

fn verify_root_by(
    candidate: &Metadata<Root>,
    delegator: &str,
    signer_root: &Metadata<Root>,
) -> Result<(), Error> {
    let role_keys = top_level_keys(signer_root, "root")?;
    candidate.verify_threshold("root", delegator, &signer_root.signed.keys, &role_keys)
}
