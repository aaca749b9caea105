//! Names more than one crate spells: one definition each, imported by the writer and every reader.
//!
//! * [`attributes`]: the DDI attributes (configData) keel-agent reports and keel-server reads
//!   (delta offers, the dashboard's Slots card); docs/agent.md "Reported attributes".
//! * [`properties`]: sw-description `properties` of keel's own handlers (`keel-delta`,
//!   `keel-chunked`), written by keel-bundle and read by keel-agent and keel-server;
//!   docs/swu-format.md.

/// DDI attributes describing the booted slot.
pub mod attributes {
    /// The booted slot, `A` or `B`.
    pub const SLOT: &str = "keel.slot";
    /// `software.version` of the bundle that wrote the booted slot.
    pub const VERSION: &str = "keel.version";
    /// The last update from removable media: `<outcome> <version> <bundle file> <unix time>`.
    pub const MEDIA: &str = "keel.media";
    /// `ZSTD_versionNumber()` of the zstd library the agent recompresses frames with.
    pub const DELTA_ZSTD: &str = "keel.delta.zstd";
    /// Field of [`slot_target`]: sha256 (lower-case hex) of the image in the target.
    pub const SHA256: &str = "sha256";
    /// Field of [`slot_target`]: size in bytes of the image in the target.
    pub const SIZE: &str = "size";

    const SLOT_PREFIX: &str = "keel.slot.";

    /// `keel.slot.<target>.<field>`: a field of the image in one target of the booted slot.
    pub fn slot_target(target: &str, field: &str) -> String {
        format!("{SLOT_PREFIX}{target}.{field}")
    }

    /// The (target, field) of a [`slot_target`] attribute name; `None` for any other name.
    pub fn parse_slot_target(name: &str) -> Option<(&str, &str)> {
        let (target, field) = name.strip_prefix(SLOT_PREFIX)?.rsplit_once('.')?;
        (!target.is_empty() && !field.is_empty()).then_some((target, field))
    }
}

/// sw-description entry properties of keel's handlers.
pub mod properties {
    /// sha256 of the seed image a `keel-delta` entry was made against.
    pub const SOURCE_SHA256: &str = "source-sha256";
    /// sha256 of the image a `keel-delta` / `keel-chunked` entry produces.
    pub const TARGET_SHA256: &str = "target-sha256";
    /// Size of the image a `keel-chunked` entry produces.
    pub const TARGET_SIZE: &str = "target-size";
    /// The zstd version (`ZSTD_versionNumber()`) a zstd-frame delta recompresses with.
    pub const ZSTD_FRAMES: &str = "zstd-frames";
    /// File name of the pack a `keel-chunked` entry fetches missing chunks from.
    pub const PACK: &str = "pack";
}

#[cfg(test)]
mod tests {
    use super::attributes::*;

    #[test]
    fn slot_target_names_round_trip() {
        let name = slot_target("rootfs.img", SHA256);
        assert_eq!(name, "keel.slot.rootfs.img.sha256");
        assert_eq!(parse_slot_target(&name), Some(("rootfs.img", SHA256)));
        assert_eq!(parse_slot_target(SLOT), None);
        assert_eq!(parse_slot_target("keel.slot.x"), None);
        assert_eq!(parse_slot_target("slot.a.version"), None);
    }
}
