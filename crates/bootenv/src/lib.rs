//! Bootloader environments written natively: EFI Boot Guard BGENV.DAT, U-Boot env, GRUB grubenv.
