//! Timestamps the presence core writes: XEP-0082 / RFC 3339 delay stamps on offline messages
//! (XEP-0203) and the RFC 7231 IMF-fixdate of the `Date` header in REGISTER responses
//! (RFC 3261 §20.17).

/// Current UTC time as RFC 3339 / XEP-0082 `CCYY-MM-DDThh:mm:ssZ`.
pub(crate) fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// RFC 7231 IMF-fixdate for the Date header of REGISTER responses (RFC 3261 §20.17).
pub(crate) fn httpdate_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    httpdate(secs)
}

fn httpdate(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let stamp = rfc3339(secs); // YYYY-MM-DDThh:mm:ssZ
    let (y, m, d) = (&stamp[0..4], &stamp[5..7], &stamp[8..10]);
    let month = m.parse::<usize>().unwrap_or(1).clamp(1, 12);
    let weekday = DAYS[((secs / 86_400) % 7) as usize];
    format!(
        "{weekday}, {d} {} {y} {} GMT",
        MONTHS[month - 1],
        &stamp[11..19]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn date_header_is_imf_fixdate() {
        // The RFC 3261 §20.17 example date.
        assert_eq!(httpdate(1_289_690_940), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(httpdate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
