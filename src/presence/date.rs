//! Timestamps the presence core writes: XEP-0082 / RFC 3339 delay stamps on offline messages
//! (XEP-0203) and the RFC 7231 IMF-fixdate of the `Date` header in REGISTER responses
//! (RFC 3261 §20.17).

use std::time::SystemTime;

use time::format_description::BorrowedFormatItem;
use time::OffsetDateTime;

/// XEP-0082 `DateTime` profile in UTC, without fractions of a second.
const RFC3339: &[BorrowedFormatItem<'_>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// Current UTC time as RFC 3339 / XEP-0082 `CCYY-MM-DDThh:mm:ssZ`.
pub(crate) fn rfc3339_now() -> String {
    OffsetDateTime::now_utc()
        .format(RFC3339)
        .unwrap_or_default()
}

/// `secs` after the Unix epoch as RFC 3339 / XEP-0082 `CCYY-MM-DDThh:mm:ssZ` (the epoch for a
/// time past year 9999).
#[cfg(test)]
fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(RFC3339)
        .unwrap_or_default()
}

/// RFC 7231 IMF-fixdate for the Date header of REGISTER responses (RFC 3261 §20.17).
pub(crate) fn httpdate_now() -> String {
    httpdate::fmt_http_date(SystemTime::now())
}

#[cfg(test)]
fn httpdate(secs: u64) -> String {
    use std::time::{Duration, UNIX_EPOCH};
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
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
