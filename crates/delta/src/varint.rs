//! LEB128 unsigned varints and zigzag signed varints for the control stream.

pub(crate) fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads a varint at `*pos`, advancing it. `None` if truncated or longer than 10 bytes / 64 bits.
pub(crate) fn get_u64(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*pos)?;
        *pos += 1;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

pub(crate) fn get_i64(data: &[u8], pos: &mut usize) -> Option<i64> {
    let z = get_u64(data, pos)?;
    Some(((z >> 1) as i64) ^ -((z & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_extremes() {
        let values = [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX];
        let signed = [0i64, -1, 1, i64::MIN, i64::MAX, -300];
        let mut buf = Vec::new();
        for v in values {
            put_u64(&mut buf, v);
        }
        for v in signed {
            put_i64(&mut buf, v);
        }
        let mut pos = 0;
        for v in values {
            assert_eq!(get_u64(&buf, &mut pos), Some(v));
        }
        for v in signed {
            assert_eq!(get_i64(&buf, &mut pos), Some(v));
        }
        assert_eq!(pos, buf.len());
        assert_eq!(get_u64(&[0x80, 0x80], &mut 0), None);
        assert_eq!(get_u64(&[0xff; 11], &mut 0), None);
    }
}
