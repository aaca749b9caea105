//! Prepares a file-backed device for benchmarks (bench/agent-stdin-rss.sh): a signing
//! certificate (openssl), a pseudo-random rootfs image of the given size, a signed bundle
//! made with keel-bundle, two sparse slot files, two BGENV.DAT copies and agent.toml.
//!
//! usage: bench_device <dir> <image size in MiB>

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;

use keel_bootenv::ebg::BgEnv;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, mib) = match args.as_slice() {
        [_, dir, mib] => (
            Path::new(dir).to_path_buf(),
            mib.parse::<u64>().expect("size in MiB"),
        ),
        _ => {
            eprintln!("usage: bench_device <dir> <image size in MiB>");
            std::process::exit(2);
        }
    };
    let size = mib * 1024 * 1024;
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=keel-bench",
            "-days",
            "30",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(&dir)
        .output()
        .expect("openssl");
    assert!(status.status.success());

    // Pseudo-random image (incompressible, fast to generate).
    let image = dir.join("rootfs.img");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&image).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        out.write_all(&block).unwrap();
    }
    out.flush().unwrap();
    drop(out);

    // The device is slot B's path (not the target name) so that SWUpdate can install the very
    // same bundle for comparison; installed-directly makes SWUpdate stream it too.
    let manifest = format!(
        "[software]\nversion = \"bench\"\nhardware-compatibility = [\"1.0\"]\n[[software.images]]\nfilename = \"rootfs.img\"\ndevice = \"{}\"\ntype = \"raw\"\ninstalled-directly = true\n",
        dir.join("slot-b.img").display()
    );
    let spec = keel_bundle::BundleSpec::from_manifest_str(&manifest, &dir).unwrap();
    let signer = keel_sign::Signer::from_pem(
        &std::fs::read(dir.join("cert.pem")).unwrap(),
        &std::fs::read(dir.join("key.pem")).unwrap(),
    )
    .unwrap();
    let options = keel_bundle::CreateOptions {
        signer: Some(signer),
        ..Default::default()
    };
    let bundle = BufWriter::new(std::fs::File::create(dir.join("update.swu")).unwrap());
    keel_bundle::create(&spec, &options, bundle).unwrap();
    std::fs::remove_file(&image).unwrap();

    for slot in ["a", "b"] {
        let f = std::fs::File::create(dir.join(format!("slot-{slot}.img"))).unwrap();
        f.set_len(size).unwrap();
    }
    for (i, slot) in ["A", "B"].iter().enumerate() {
        std::fs::create_dir_all(dir.join(format!("BOOT{i}"))).unwrap();
        let env = BgEnv {
            kernelfile: format!("C:BOOT{i}:linux.efi"),
            kernelparams: format!("keel.slot={slot}"),
            revision: 2 - i as u32,
            watchdog_timeout_sec: 30,
            ..BgEnv::new()
        };
        std::fs::write(
            dir.join(format!("BOOT{i}/BGENV.DAT")),
            env.to_bytes().unwrap(),
        )
        .unwrap();
    }
    std::fs::write(dir.join("cmdline"), "keel.slot=A\n").unwrap();
    let d = dir.display();
    let config = format!(
        r#"state_dir = "{d}/state"
trusted_certs = "{d}/cert.pem"
cmdline_path = "{d}/cmdline"

[bootloader]
type = "ebg"
env = ["{d}/BOOT0/BGENV.DAT", "{d}/BOOT1/BGENV.DAT"]

[slots.A]
targets = {{ rootfs = "{d}/slot-a.img" }}
kernelfile = "C:BOOT0:linux.efi"
kernelparams = "keel.slot=A"

[slots.B]
targets = {{ rootfs = "{d}/slot-b.img" }}
kernelfile = "C:BOOT1:linux.efi"
kernelparams = "keel.slot=B"
"#
    );
    std::fs::write(dir.join("agent.toml"), config).unwrap();
    println!("{}", dir.join("update.swu").display());
}
