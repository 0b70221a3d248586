//! Local wall-clock time stamps at fixed UTC offsets (`YYYYMMDDHHmmss`), as Udesk signs
//! them, without a time-zone database.

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYYMMDDHHmmss` for a Unix time at a fixed UTC offset.
pub fn local_timestamp(unix_secs: i64, offset_secs: i32) -> String {
    let t = unix_secs + i64::from(offset_secs);
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The Unix time of a `YYYYMMDDHHmmss` local time at a fixed UTC offset.
pub fn parse_local_timestamp(s: &str, offset_secs: i32) -> Option<i64> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(4..6)?,
        n(6..8)?,
        n(8..10)?,
        n(10..12)?,
        n(12..14)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    Some(days * 86_400 + i64::from(h * 3600 + mi * 60 + se) - i64::from(offset_secs))
}

/// A fixed UTC offset: `+08:00`, `-05:30`, `UTC`, or the names of the zones without
/// daylight saving time that Udesk tenants use.
pub(crate) fn parse_offset(s: &str) -> Option<i32> {
    match s {
        "UTC" | "Z" => return Some(0),
        "Asia/Shanghai" | "Asia/Chongqing" | "Asia/Hong_Kong" | "Asia/Taipei" | "Asia/Macau"
        | "Asia/Singapore" | "PRC" => return Some(8 * 3600),
        "Asia/Tokyo" | "Asia/Seoul" => return Some(9 * 3600),
        _ => {}
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 3600 + m * 60))
}

/// A zone for Udesk's timestamps (`Asia/Shanghai`, `+08:00`, ...), as seconds east of UTC,
/// worked out once where it is read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Timezone {
    name: String,
    offset_secs: i32,
}

#[derive(Debug, thiserror::Error)]
#[error("use a fixed offset like \"+08:00\" or Asia/Shanghai")]
pub struct UnknownTimezone;

impl TryFrom<String> for Timezone {
    type Error = UnknownTimezone;

    fn try_from(name: String) -> Result<Self, UnknownTimezone> {
        let offset_secs = parse_offset(&name).ok_or(UnknownTimezone)?;
        Ok(Self { name, offset_secs })
    }
}

impl Timezone {
    pub(crate) fn offset_secs(&self) -> i32 {
        self.offset_secs
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times() {
        // 2015-11-24 06:14:51 UTC is 14:14:51 in Shanghai.
        let unix = 1_448_345_691;
        assert_eq!(local_timestamp(unix, 8 * 3600), "20151124141451");
        assert_eq!(local_timestamp(unix, 0), "20151124061451");
        assert_eq!(
            parse_local_timestamp("20151124141451", 8 * 3600),
            Some(unix)
        );
        assert_eq!(local_timestamp(951_782_400, 0), "20000229000000");
        for t in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(
                parse_local_timestamp(&local_timestamp(t, -18_000), -18_000),
                Some(t)
            );
        }
        assert_eq!(parse_local_timestamp("2015112414145", 0), None);
        assert_eq!(parse_local_timestamp("20151324141451", 0), None);
        assert_eq!(parse_offset("Asia/Shanghai"), Some(28_800));
        assert_eq!(parse_offset("-05:30"), Some(-19_800));
        assert_eq!(parse_offset("Europe/Paris"), None);
    }
}
