//! Expiry timestamps (`YYYY-MM-DDTHH:MM:SSZ`, UTC) and the trusted-time policy for devices without an RTC.

use std::path::PathBuf;

/// Parses TUF's `expires` format into seconds since the Unix epoch. Returns `None` for anything else.
pub fn parse_expires(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 20
        || bytes.get(4) != Some(&b'-')
        || bytes.get(7) != Some(&b'-')
        || bytes.get(10) != Some(&b'T')
        || bytes.get(13) != Some(&b':')
        || bytes.get(16) != Some(&b':')
        || bytes.get(19) != Some(&b'Z')
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Formats seconds since the Unix epoch in TUF's `expires` format.
pub fn format_expires(unix: i64) -> String {
    // Clamp to years 0001..9999 so any i64 (e.g. a corrupt time floor) formats without overflow.
    let unix = unix.clamp(-62_135_596_800, 253_402_300_799);
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Where the verifier's notion of "now" comes from.
///
/// Every expiry check of one refresh uses a single reference time:
/// `max(system clock, build_time_floor, persisted floor)`.
/// * The system clock may be wrong on a device without a battery-backed RTC (it boots at 1970 or at the last
///   image build time until NTP runs). Time never appears to go backwards: a clock behind the floor is raised to
///   the floor instead of failing, so expired metadata an attacker replays stays expired.
/// * After a successful refresh the floor is raised to `min(reference time, expiry of the new timestamp)`.
///   A clock that jumps far into the future therefore cannot poison the floor: a refresh at such a time fails
///   (everything is expired) and nothing is recorded, and a successful refresh never records a time later than
///   what the repository's own signed timestamp vouches for.
#[derive(Debug, Clone, Default)]
pub struct TimePolicy {
    /// Lowest believable time, e.g. the firmware build time (seconds since the Unix epoch).
    pub build_time_floor: i64,
    /// File that keeps the floor across reboots (kept outside the metadata directory so the directory holds
    /// exactly the role files). `None` keeps nothing across runs.
    pub floor_file: Option<PathBuf>,
    /// Overrides the system clock (tests and devices that read a trusted external time source).
    pub fixed_now: Option<i64>,
}

impl TimePolicy {
    /// The reference time for a refresh starting now.
    pub fn reference_time(&self) -> i64 {
        let clock = self.fixed_now.unwrap_or_else(system_now);
        clock
            .max(self.build_time_floor)
            .max(self.persisted_floor().unwrap_or(i64::MIN))
    }

    /// The floor recorded by earlier successful refreshes, if any.
    pub fn persisted_floor(&self) -> Option<i64> {
        let path = self.floor_file.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        text.trim().parse().ok()
    }

    /// Records a successful refresh at `reference` whose timestamp expires at `timestamp_expires`.
    pub fn record_success(&self, reference: i64, timestamp_expires: i64) -> std::io::Result<()> {
        let Some(path) = &self.floor_file else {
            return Ok(());
        };
        let candidate = reference.min(timestamp_expires);
        if self
            .persisted_floor()
            .is_some_and(|floor| floor >= candidate)
        {
            return Ok(());
        }
        crate::store::write_atomically(path, format!("{candidate}\n").as_bytes())
    }
}

/// Seconds since the Unix epoch from the system clock (negative if the clock is before 1970).
pub fn system_now() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_round_trip() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59Z",
            "2030-12-31T12:00:00Z",
            "2106-02-07T06:28:16Z",
        ] {
            let unix = parse_expires(text).unwrap();
            assert_eq!(format_expires(unix), text);
        }
        assert_eq!(parse_expires("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(parse_expires("2030-01-01T00:00:00+00:00"), None);
        assert_eq!(parse_expires("2001-02-29T00:00:00Z"), None);
        assert_eq!(parse_expires("2001-1-01T00:00:00Z0"), None);
        assert_eq!(format_expires(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(format_expires(i64::MIN), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn floor_only_rises_and_is_capped_by_timestamp_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let policy = TimePolicy {
            build_time_floor: 100,
            floor_file: Some(dir.path().join("floor")),
            fixed_now: Some(50),
        };
        assert_eq!(policy.reference_time(), 100);
        policy.record_success(1_000, 500).unwrap();
        assert_eq!(policy.persisted_floor(), Some(500));
        assert_eq!(policy.reference_time(), 500);
        policy.record_success(400, 900).unwrap();
        assert_eq!(policy.persisted_floor(), Some(500));
    }
}
