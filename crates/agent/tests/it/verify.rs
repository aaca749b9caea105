//! `verify_after_write = true` on real files with the real binary: the install reads the slot
//! back after its fsync (page cache dropped with posix_fadvise) and activates; `status` and a
//! reboot show the new slot.

use crate::common;

use common::{image, FileDevice};

#[test]
fn install_with_verify_after_write_reads_back_and_activates() {
    let device = FileDevice::new();
    let config = std::fs::read_to_string(&device.config_path).unwrap();
    std::fs::write(
        &device.config_path,
        format!("verify_after_write = true\n{config}"),
    )
    .unwrap();
    let data = image(7, 200 * 1024);
    let bundle = device.bundle("2.0", &data);
    let out = device.install_stdin(&bundle);
    assert!(
        out.status.success(),
        "install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slot = std::fs::read(device.path("rootfs-b.img")).unwrap();
    assert_eq!(&slot[..data.len()], &data[..]);
    assert_eq!(device.status_json()["state"], "installed");
    assert!(device.reboot(2).contains("keel.slot=B"));
    assert_eq!(device.status_json()["booted_slot"], "B");
}
