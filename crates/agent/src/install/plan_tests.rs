use std::collections::BTreeMap;
use std::path::PathBuf;

use keel_formats::swdesc::SwDescription;

use super::*;
use crate::config::{SlotConfig, SlotId, Slots};

const IVT: &str = "000102030405060708090a0b0c0d0e0f";
const HASH: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn slot(id: &str, selection: Option<&str>) -> SlotConfig {
    SlotConfig {
        targets: BTreeMap::from([
            (
                "rootfs".to_string(),
                PathBuf::from(format!("/dev/{id}-rootfs")),
            ),
            (
                "kernel".to_string(),
                PathBuf::from(format!("/dev/{id}-kernel")),
            ),
        ]),
        cmdline_token: None,
        selection: selection.map(str::to_string),
        kernelfile: None,
        kernelparams: None,
    }
}

fn slots() -> Slots {
    Slots {
        a: slot("a", None),
        b: slot("b", None),
    }
}

/// Plan `software` (the inside of the group) for an install from A into B.
fn plan_with(software: &str, slots: &Slots, revision: Option<&str>) -> Result<Plan, PlanError> {
    let text = format!("software = {{ version = \"2.0\"; {software} }};");
    let desc = SwDescription::parse(text.as_bytes()).unwrap();
    Plan::new(
        &desc,
        PlanContext {
            slots,
            booted: SlotId::A,
            target: SlotId::B,
            hardware_revision: revision,
        },
    )
}

fn plan(software: &str) -> Result<Plan, PlanError> {
    plan_with(software, &slots(), None)
}

fn image(filename: &str, rest: &str) -> String {
    format!("{{ filename = \"{filename}\"; sha256 = \"{HASH}\"; {rest} }}")
}

#[test]
fn images_go_to_the_inactive_slot_with_their_kind_decoding_and_seed() {
    let plan = plan(&format!(
        "images: ( {}, {}, {} );",
        image(
            "root.zst",
            &format!(
                "device = \"rootfs\"; compressed = \"zstd\"; encrypted = true; ivt = \"{IVT}\";"
            )
        ),
        image(
            "kernel.delta",
            "device = \"/dev/b-kernel\"; type = \"keel-delta\";"
        ),
        image(
            "extra.kidx",
            "device = \"rootfs\"; type = \"keel-chunked\";"
        ),
    ));
    // Two images for one target.
    assert!(
        matches!(&plan, Err(PlanError::Unsupported(m)) if m.contains("both target /dev/b-rootfs")),
        "{plan:?}"
    );

    let plan = plan_with(
        &format!(
            "images: ( {}, {} );",
            image(
                "root.zst",
                &format!("device = \"rootfs\"; compressed = \"zstd\"; encrypted = true; ivt = \"{IVT}\";")
            ),
            image(
                "kernel.kidx",
                "device = \"/dev/b-kernel\"; type = \"keel-chunked\";"
            ),
        ),
        &slots(),
        None,
    )
    .unwrap();
    assert_eq!(plan.version.as_deref(), Some("2.0"));
    assert!(plan.encrypted());
    let [root, kernel] = &plan.images[..] else {
        panic!("{plan:?}")
    };
    assert_eq!(root.kind, ImageKind::Raw);
    assert_eq!(root.target, PathBuf::from("/dev/b-rootfs"));
    assert_eq!(root.target_name, "rootfs");
    assert_eq!(root.seed, None);
    assert_eq!(
        root.decode,
        Decode {
            encrypted: Some(Some(IVT.into())),
            zstd: true
        }
    );
    assert!(root.decode.transforms());
    assert_eq!(kernel.kind, ImageKind::Chunked);
    assert_eq!(kernel.target_name, "kernel");
    assert_eq!(kernel.seed, Some(PathBuf::from("/dev/a-kernel")));
    assert!(!kernel.decode.transforms());
}

#[test]
fn a_delta_is_seeded_by_the_same_target_of_the_booted_slot() {
    let plan = plan(&format!(
        "images: ( {} );",
        image("root.delta", "device = \"rootfs\"; type = \"keel-delta\";")
    ))
    .unwrap();
    assert_eq!(plan.images[0].kind, ImageKind::Delta);
    assert_eq!(plan.images[0].seed, Some(PathBuf::from("/dev/a-rootfs")));
}

#[test]
fn the_booted_slot_is_never_a_target() {
    let err = plan(&format!(
        "images: ( {} );",
        image("r", "device = \"/dev/a-rootfs\";")
    ))
    .unwrap_err();
    assert!(
        matches!(
            &err,
            PlanError::ActiveSlot {
                booted: SlotId::A,
                ..
            }
        ),
        "{err}"
    );
    let err = plan(&format!(
        "images: ( {} );",
        image("r", "device = \"/dev/sdz\";")
    ))
    .unwrap_err();
    assert!(err.to_string().contains("neither a target name"), "{err}");
}

#[test]
fn nothing_to_install_is_refused_with_a_hint() {
    let err = plan("").unwrap_err();
    assert_eq!(
        err.to_string(),
        "sw-description: no images for slot B (is a selection needed?)"
    );
    let selected = Slots {
        a: slot("a", None),
        b: slot("b", Some("stable,copy2")),
    };
    let err = plan_with("stable = { copy2 = { scripts: ( ); }; };", &selected, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sw-description: no images for slot B in selection stable,copy2"
    );
}

#[test]
fn hardware_compatibility_is_checked_only_with_a_revision() {
    let images = format!("images: ( {} );", image("r", "device = \"rootfs\";"));
    plan_with(&images, &slots(), None).unwrap();
    let err = plan_with(&images, &slots(), Some("rev-b")).unwrap_err();
    assert!(matches!(err, PlanError::Incompatible(_)), "{err}");
    let listed = format!("hardware-compatibility = [ \"rev-a\", \"rev-c\" ]; {images}");
    plan_with(&listed, &slots(), Some("rev-a")).unwrap();
    let err = plan_with(&listed, &slots(), Some("rev-b")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bundle not for this device: hardware revision rev-b not in hardware-compatibility (rev-a, rev-c)"
    );
}

#[test]
fn unsupported_entries_are_refused() {
    for (software, expected) in [
        (
            image("r", "device = \"rootfs\"; type = \"ubivol\";"),
            "handler type \"ubivol\" is not supported",
        ),
        (
            image("r", "device = \"rootfs\"; compressed = \"zlib\";"),
            "compressed=\"zlib\" is not supported",
        ),
        (
            image(
                "r",
                "device = \"rootfs\"; type = \"keel-chunked\"; compressed = \"zstd\";",
            ),
            "index is neither encrypted nor compressed",
        ),
        (
            "{ filename = \"r\"; device = \"rootfs\"; }".to_string(),
            "image r: no sha256",
        ),
        (image("r", ""), "image r: no device"),
    ] {
        let err = plan(&format!("images: ( {software} );")).unwrap_err();
        assert!(
            matches!(&err, PlanError::Unsupported(m) if m.contains(expected)),
            "{err}"
        );
        assert!(err.to_string().starts_with("sw-description: "), "{err}");
    }
    let err = plan("files: ( { filename = \"f\"; path = \"/etc/f\"; } );").unwrap_err();
    assert_eq!(
        err.to_string(),
        "sw-description: files entries are not supported (first: f); ship images for slot targets"
    );
}

#[test]
fn scripts_and_bootenv_are_planned() {
    let plan = plan(&format!(
        "images: ( {} ); scripts: ( {}, {} ); bootenv: ( {{ name = \"k\"; value = \"v\"; }} );",
        image("r", "device = \"rootfs\";"),
        image("pre.sh", "type = \"preinstall\";"),
        image("both.sh", "type = \"shellscript\";"),
    ))
    .unwrap();
    let kinds: Vec<_> = plan
        .scripts
        .iter()
        .map(|s| (s.name.as_str(), s.kind))
        .collect();
    assert_eq!(
        kinds,
        [("pre.sh", ScriptKind::Pre), ("both.sh", ScriptKind::Shell)]
    );
    assert!(ScriptKind::Shell.runs(true) && ScriptKind::Shell.runs(false));
    assert!(ScriptKind::Pre.runs(true) && !ScriptKind::Pre.runs(false));
    assert!(!ScriptKind::Post.runs(true) && ScriptKind::Post.runs(false));
    assert_eq!(plan.bootenv, [("k".to_string(), "v".to_string())]);

    let err = plan_lua();
    assert!(
        err.to_string().contains("type \"lua\" is not supported"),
        "{err}"
    );
}

fn plan_lua() -> PlanError {
    plan(&format!(
        "images: ( {} ); scripts: ( {} );",
        image("r", "device = \"rootfs\";"),
        image("s.lua", ""),
    ))
    .unwrap_err()
}
