//! CRC-32 as used by all three bootloaders that checksum their environment: the IEEE 802.3
//! polynomial, reflected (0xEDB88320), init and final XOR 0xFFFFFFFF. Equal to zlib's
//! `crc32(0, data, len)` and UEFI's `CalculateCrc32`; computed by `crc32fast` (already in the
//! agent through keel-delta).

/// CRC-32 (zlib) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_vector() {
        // The standard check value of CRC-32/ISO-HDLC: the variant U-Boot and EFI Boot Guard use.
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(super::crc32(b""), 0);
    }
}
