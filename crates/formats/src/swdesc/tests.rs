use super::*;

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Shaped like isar-cip-core's sw-description template (round-robin handler + EBG).
fn cip_like() -> String {
    format!(
        r#"software =
{{
    version = "2024.1";
    name = "cip software update";
    description = "Firmware update for CIP";
    hardware-compatibility: [ "cip-core-1.0" ];
    images: (
    {{
        filename = "cip-core-image.squashfs.gz";
        device = "C:BOOT0:linux.efi->fedcba98-7654-3210-cafe-5e0710000001,C:BOOT1:linux.efi->fedcba98-7654-3210-cafe-5e0710000002";
        type = "roundrobin";
        compressed = "zlib";
        filesystem = "ext4";
        properties: {{
            subtype = "image";
            configfilecheck = "/etc/os-release@not_match@IMAGE_UUID=abc";
        }};
        sha256 = "{SHA}";
    }},
    {{
        filename = "linux.efi";
        path = "linux.efi";
        device = "BOOT0,BOOT1";
        filesystem = "vfat";
        type = "roundrobin";
        properties: {{ subtype = "kernel"; }};
        sha256 = "{SHA}";
    }});
    files: ( {{ filename = "app.conf"; path = "/etc/app.conf"; sha256 = "{SHA}"; }} );
    scripts: ( {{ filename = "check.sh"; type = "shellscript"; sha256 = "{SHA}"; }} );
    bootenv: ( {{ name = "kernel_params"; value = "console=ttyS0"; }} );
}}
"#
    )
}

#[test]
fn cip_description_resolves() {
    let d = SwDescription::parse(cip_like().as_bytes()).unwrap();
    assert_eq!(d.syntax(), Syntax::Libconfig);
    let sw = d.software().unwrap();
    assert_eq!(sw.version.as_deref(), Some("2024.1"));
    assert_eq!(
        sw.hardware_compatibility,
        Some(vec!["cip-core-1.0".to_string()])
    );
    assert_eq!(sw.images.len(), 2);
    let img = &sw.images[0];
    assert_eq!(img.kind.as_deref(), Some("roundrobin"));
    assert_eq!(img.compressed.as_deref(), Some("zlib"));
    assert_eq!(img.sha256, parse_sha256(SHA));
    assert_eq!(
        img.properties[0],
        ("subtype".to_string(), vec!["image".to_string()])
    );
    assert_eq!(
        img.fields.get("filesystem"),
        Some(&Value::Str("ext4".into()))
    );
    assert_eq!(sw.files[0].path.as_deref(), Some("/etc/app.conf"));
    assert_eq!(sw.scripts[0].kind.as_deref(), Some("shellscript"));
    assert_eq!(sw.bootenv[0].value.as_deref(), Some("console=ttyS0"));
    assert_eq!(sw.member_entries().count(), 4);
    // Write and re-read: same tree.
    let again = SwDescription::parse(d.to_libconfig().as_bytes()).unwrap();
    assert_eq!(again.root(), d.root());
}

#[test]
fn selection_form_like_swupdate_e() {
    let text = r##"
    software = {
        version = "2.0";
        hardware-compatibility = [ "1.0" ];
        stable = {
            copy1 = { images: ( { filename = "rootfs.img"; device = "/dev/sda2"; } ); };
            copy2 = { images: ( { filename = "rootfs.img"; device = "/dev/sda3"; } ); };
            alias = { ref = "#./copy2"; };
        };
    };"##;
    let d = SwDescription::parse(text.as_bytes()).unwrap();
    let c1 = d.select(&["stable", "copy1"]).unwrap();
    assert_eq!(
        c1.version.as_deref(),
        Some("2.0"),
        "falls back to software.version"
    );
    assert_eq!(c1.images[0].device.as_deref(), Some("/dev/sda2"));
    let c2 = d.select(&["stable", "copy2"]).unwrap();
    assert_eq!(c2.images[0].device.as_deref(), Some("/dev/sda3"));
    let alias = d.select(&["stable", "alias"]).unwrap();
    assert_eq!(alias.images[0].device.as_deref(), Some("/dev/sda3"));
    assert!(d.software().unwrap().images.is_empty());
    assert!(matches!(
        d.select(&["stable", "copy9"]),
        Err(ParseError::SelectionNotFound { .. })
    ));
    assert_eq!(
        d.selections(),
        vec![
            ("stable".to_string(), "copy1".to_string()),
            ("stable".to_string(), "copy2".to_string()),
            ("stable".to_string(), "alias".to_string())
        ]
    );
    assert_eq!(d.all_member_entries().unwrap().len(), 2);
    let tree: Vec<_> = d
        .tree_member_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.device.unwrap())
        .collect();
    assert_eq!(tree, ["/dev/sda2", "/dev/sda3"]);
    let mut d = d;
    d.for_each_member_group_mut(|g| {
        g.set("sha256", Value::Str(SHA.into()));
        Ok::<(), ()>(())
    })
    .unwrap();
    let c1 = d.select(&["stable", "copy1"]).unwrap();
    assert_eq!(c1.images[0].sha256, parse_sha256(SHA));
}

#[test]
fn documented_link_example() {
    // From SWUpdate's sw-description.rst ("links").
    let text = r##"
    software = {
      version = { ref = "#./commonversion"; };
      hardware-compatibility = ["rev10", "rev11", "rev20"];
      commonversion = "0.7-linked";
      pc: {
        stable: {
          common: { images = { ref = "#./../trythis"; }; };
          trythis: ( { filename = "rootfs1.ext4"; device = "/dev/mmcblk0p8"; type = "raw"; },
                     { filename = "rootfs5.ext4"; device = "/dev/mmcblk0p7"; type = "raw"; } );
          pdm3rev10: { images: ( { filename = "rootfs.ext3"; device = "/dev/mmcblk0p2"; } );
                       uboot: ( { name = "bootpart"; value = "0:2"; } ); };
          pdm3rev40 = { ref = "#./common"; };
        };
      };
    }"##;
    let d = SwDescription::parse(text.as_bytes()).unwrap();
    let sw = d
        .select_for_board("pc", Some(("stable", "pdm3rev40")))
        .unwrap();
    assert_eq!(sw.version.as_deref(), Some("0.7-linked"));
    let names: Vec<_> = sw
        .images
        .iter()
        .map(|e| e.filename.clone().unwrap())
        .collect();
    assert_eq!(names, ["rootfs1.ext4", "rootfs5.ext4"]);
    let sw = d
        .select_for_board("pc", Some(("stable", "pdm3rev10")))
        .unwrap();
    assert_eq!(sw.bootenv[0].name.as_deref(), Some("bootpart"));
}

#[test]
fn json_form() {
    let text = format!(
        r#"{{ "software": {{ "version": "0.1", "hardware-compatibility": ["1.0", "1.1"],
            "images": [ {{ "filename": "a.img", "device": "/dev/x", "encrypted": true,
                           "ivt": "00112233445566778899aabbccddeeff", "sha256": "{SHA}",
                           "installed-directly": true, "offset": 512 }} ] }} }}"#
    );
    let d = SwDescription::parse(text.as_bytes()).unwrap();
    assert_eq!(d.syntax(), Syntax::Json);
    let sw = d.software().unwrap();
    assert_eq!(sw.hardware_compatibility.as_ref().unwrap().len(), 2);
    let e = &sw.images[0];
    assert!(e.encrypted && e.installed_directly);
    assert_eq!(e.fields.get("offset"), Some(&Value::Int(512)));
    let lc = d.to_libconfig();
    let again = SwDescription::parse(lc.as_bytes()).unwrap();
    assert_eq!(again.software().unwrap(), sw);
}

#[test]
fn field_errors_name_the_path() {
    let bad_hash =
        r#"software = { version = "1"; images = ( { filename = "a"; sha256 = "zz"; } ); };"#;
    let err = SwDescription::parse(bad_hash.as_bytes())
        .unwrap()
        .software()
        .unwrap_err()
        .to_string();
    assert!(err.contains("software.images[0].sha256"), "{err}");
    let bad_type = r#"software = { version = 1; };"#;
    let err = SwDescription::parse(bad_type.as_bytes())
        .unwrap()
        .software()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("software.version") && err.contains("integer"),
        "{err}"
    );
    assert_eq!(
        SwDescription::parse(b"other = 1;"),
        Err(ParseError::NoSoftware)
    );
    assert!(matches!(
        SwDescription::parse(b"{ \"software\": "),
        Err(ParseError::Json(_))
    ));
    assert!(matches!(
        SwDescription::parse(b"software = {\xff}"),
        Err(ParseError::NotUtf8 { .. })
    ));
    let looped = r##"software = { a = { ref = "#./b"; }; b = { ref = "#./a"; }; images = { ref = "#./a"; }; };"##;
    let err = SwDescription::parse(looped.as_bytes())
        .unwrap()
        .software()
        .unwrap_err();
    assert!(matches!(err, ParseError::Link { .. }), "{err}");
}
