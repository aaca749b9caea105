//! sw-description features on the simulated device: SWUpdate-style `-e stable,copyN`
//! selections with literal device paths, pre/post-install scripts (run in order, failure
//! blocks activation), and descriptions that give the slot nothing to install.

use crate::common;

use common::{image, starts_with, Fixture};
use keel_agent::install::PlanError;
use keel_agent::{InstallError, InstallOptions, SlotId};
use keel_sim::Loader;

fn bundle_from_description(fx: &Fixture, description: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let work = tempfile::tempdir_in(fx.dir.path()).unwrap();
    for (name, data) in files {
        std::fs::write(work.path().join(name), data).unwrap();
    }
    std::fs::write(work.path().join("sw-description"), description).unwrap();
    let spec = keel_bundle::BundleSpec::from_sw_description(
        &work.path().join("sw-description"),
        work.path(),
    )
    .unwrap();
    let options = keel_bundle::CreateOptions {
        signer: Some(fx.signer.signer()),
        aes_key: None,
        source_date_epoch: None,
    };
    let mut out = Vec::new();
    keel_bundle::create(&spec, &options, &mut out).unwrap();
    out
}

const DUAL_COPY: &str = r#"software =
{
	version = "2.0";
	stable = {
		copy1 = {
			images: ( { filename = "rootfs.img"; device = "/dev/slotA-rootfs"; type = "raw"; } );
		};
		copy2 = {
			images: ( { filename = "rootfs.img"; device = "/dev/slotB-rootfs"; type = "raw"; } );
		};
	};
};
"#;

#[test]
fn dual_copy_selection_picks_the_inactive_slot() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Ebg);
    device.config.slots.a.selection = Some("stable,copy1".into());
    device.config.slots.b.selection = Some("stable,copy2".into());
    let rootfs = image(21, 150_000);
    let bundle = bundle_from_description(&fx, DUAL_COPY, &[("rootfs.img", &rootfs)]);
    let report = device
        .agent()
        .unwrap()
        .install(&bundle[..], InstallOptions::default())
        .unwrap();
    assert_eq!(report.target, SlotId::B);
    assert!(starts_with(
        &device.slot_contents(SlotId::B, "rootfs"),
        &rootfs
    ));
    assert_eq!(device.boot().unwrap().slot, SlotId::B);
    device.agent().unwrap().confirm(None).unwrap();
    // From B the same bundle goes to A via copy1.
    let report = device
        .agent()
        .unwrap()
        .install(&bundle[..], InstallOptions::default())
        .unwrap();
    assert_eq!(report.target, SlotId::A);
    assert!(starts_with(
        &device.slot_contents(SlotId::A, "rootfs"),
        &rootfs
    ));
}

#[test]
fn a_wrong_selection_cannot_reach_the_active_slot_and_an_empty_one_installs_nothing() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Uboot);
    let bundle = bundle_from_description(&fx, DUAL_COPY, &[("rootfs.img", &image(22, 1000))]);
    // Misconfigured: slot B's selection is copy1 (slot A's paths).
    device.config.slots.b.selection = Some("stable,copy1".into());
    let (result, ops) = device.count_ops(|| {
        device
            .agent()
            .unwrap()
            .install(&bundle[..], InstallOptions::default())
    });
    assert!(
        matches!(
            result,
            Err(InstallError::Plan(PlanError::ActiveSlot { .. }))
        ),
        "{:?}",
        result.err()
    );
    assert_eq!(ops, 0);
    // No selection: the top level has no images for the slot.
    device.config.slots.b.selection = None;
    let (result, ops) = device.count_ops(|| {
        device
            .agent()
            .unwrap()
            .install(&bundle[..], InstallOptions::default())
    });
    assert!(
        matches!(&result, Err(InstallError::Plan(PlanError::NoImages { .. }))),
        "{:?}",
        result.err()
    );
    assert_eq!(ops, 0);
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
}

/// Scripts listed (and so archived) before the image: a streaming install can run the
/// pre-install ones before the first image byte.
const SCRIPTED: &str = r#"software =
{
	version = "2.0";
	scripts: (
		{ filename = "pre.sh"; type = "preinstall"; },
		{ filename = "both.sh"; type = "shellscript"; },
		{ filename = "post.sh"; type = "postinstall"; }
	);
	images: ( { filename = "rootfs.img"; device = "rootfs"; type = "raw"; } );
};
"#;

#[test]
fn scripts_run_around_the_images_and_a_failing_one_blocks_activation() {
    for post_exit in [0u8, 3] {
        let fx = Fixture::new();
        let mut device = fx.device(Loader::Ebg);
        let marker = fx.dir.path().join("marker.txt");
        let m = marker.display();
        let pre = format!(
            "echo \"pre $1 $KEEL_BOOTED_SLOT->$KEEL_TARGET_SLOT $KEEL_TARGET_ROOTFS\" >> {m}\n"
        );
        let both = format!("echo \"both $1\" >> {m}\n");
        let post = format!("echo \"post $1\" >> {m}\nexit {post_exit}\n");
        let rootfs = image(23, 50_000);
        let bundle = bundle_from_description(
            &fx,
            SCRIPTED,
            &[
                ("pre.sh", pre.as_bytes()),
                ("both.sh", both.as_bytes()),
                ("post.sh", post.as_bytes()),
                ("rootfs.img", &rootfs),
            ],
        );
        let result = device
            .agent()
            .unwrap()
            .install(&bundle[..], InstallOptions::default());
        let log = std::fs::read_to_string(&marker).unwrap();
        assert_eq!(
            log, "pre preinst A->B /dev/slotB-rootfs\nboth preinst\nboth postinst\npost postinst\n",
            "post exit {post_exit}"
        );
        if post_exit == 0 {
            result.unwrap();
            assert_eq!(device.boot().unwrap().slot, SlotId::B);
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(
                    err,
                    InstallError::Script {
                        stage: "postinst",
                        ..
                    }
                ),
                "{err}"
            );
            assert_eq!(device.boot().unwrap().slot, SlotId::A);
        }
    }
}
