//! Deterministic test data, so that failures reproduce.

/// `len` pseudo-random bytes (xorshift64) from `seed`: an "image". The same `(seed, len)` always
/// gives the same bytes; a shorter `len` gives a prefix of a longer one.
pub fn image(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn image_is_deterministic_and_seeded() {
        assert_eq!(super::image(1, 64), super::image(1, 64));
        assert_ne!(super::image(1, 64), super::image(2, 64));
        assert_eq!(super::image(3, 1000)[..10], super::image(3, 10)[..]);
    }
}
