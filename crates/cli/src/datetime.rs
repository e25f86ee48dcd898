//! Points in time given on the command line: epoch milliseconds, or an RFC 3339 date-time with
//! an explicit zone (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.250+02:00`).
//!
//! A date-time without a zone is refused rather than read in the machine's local zone: the
//! same command would mean different instants on different machines.

use anyhow::{anyhow, bail, Context};

/// Parses `text` as epoch milliseconds (digits only) or an RFC 3339 date-time with a zone;
/// returns epoch milliseconds. Fractions finer than a millisecond are truncated.
pub(crate) fn parse_epoch_ms(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .with_context(|| format!("`{text}` is out of range for epoch milliseconds"));
    }
    // One message with the reason in it: clap shows a value parser's error without its causes.
    parse_rfc3339(text).map_err(|reason| {
        anyhow!("`{text}`: {reason}; expected epoch milliseconds or an RFC 3339 date-time like 2024-05-01T12:00:00Z")
    })
}

fn parse_rfc3339(text: &str) -> anyhow::Result<i64> {
    let bytes = text.as_bytes();
    // Every valid form is ASCII, and checking that first makes every slice below safe.
    if !text.is_ascii() {
        bail!("not ASCII");
    }
    // Fixed part: YYYY-MM-DDTHH:MM:SS, 19 bytes.
    if bytes.len() < 19 {
        bail!("too short");
    }
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(index, byte)| bytes[index] != byte) || !matches!(bytes[10], b'T' | b't' | b' ') {
        bail!("expected YYYY-MM-DDTHH:MM:SS");
    }
    let year = digits(&text[0..4])?;
    let month = digits(&text[5..7])?;
    let day = digits(&text[8..10])?;
    let hour = digits(&text[11..13])?;
    let minute = digits(&text[14..16])?;
    let second = digits(&text[17..19])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        bail!("no such date");
    }
    // Second 60 is a leap second in RFC 3339; epoch time has none, so it folds onto the next.
    if hour > 23 || minute > 59 || second > 60 {
        bail!("no such time of day");
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let length = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if length == 0 {
            bail!("empty fraction of a second");
        }
        let padded = format!("{:0<3}", &fraction[..length.min(3)]);
        millis = digits(&padded)?;
        rest = &fraction[length..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        "" => bail!("no zone: add Z (UTC) or an offset like +02:00"),
        zone => {
            let (sign, hours_minutes) = match zone.split_at_checked(1) {
                Some(("+", hm)) => (1, hm),
                Some(("-", hm)) => (-1, hm),
                _ => bail!("bad zone `{zone}`"),
            };
            let (hours, minutes) = hours_minutes
                .split_once(':')
                .filter(|(h, m)| h.len() == 2 && m.len() == 2)
                .ok_or_else(|| anyhow!("bad zone `{zone}`, expected +HH:MM"))?;
            let (hours, minutes) = (digits(hours)?, digits(minutes)?);
            if hours > 23 || minutes > 59 {
                bail!("bad zone `{zone}`");
            }
            sign * (hours * 60 + minutes)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

/// A run of ASCII digits as a number (at most 4 digits are ever passed).
fn digits(text: &str) -> anyhow::Result<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        bail!("`{text}` is not a number");
    }
    text.parse::<i64>().map_err(|e| anyhow!("`{text}`: {e}"))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_milliseconds_pass_through() {
        assert_eq!(parse_epoch_ms("0").unwrap(), 0);
        assert_eq!(parse_epoch_ms("1700000000000").unwrap(), 1_700_000_000_000);
        assert!(parse_epoch_ms("99999999999999999999").is_err());
    }

    #[test]
    fn rfc3339_with_zones_and_fractions() {
        assert_eq!(parse_epoch_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_epoch_ms("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_epoch_ms("2023-11-14T22:13:21.5Z").unwrap(), 1_700_000_001_500);
        assert_eq!(
            parse_epoch_ms("2023-11-14T22:13:21.123456789z").unwrap(),
            1_700_000_001_123
        );
        assert_eq!(parse_epoch_ms("2023-11-14T23:43:20+01:30").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_epoch_ms("2023-11-14 17:13:20-05:00").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_epoch_ms("2024-02-29T00:00:00Z").unwrap(), 1_709_164_800_000);
        assert_eq!(parse_epoch_ms("1969-12-31T23:59:59Z").unwrap(), -1_000);
    }

    #[test]
    fn malformed_date_times_are_refused() {
        for text in [
            "",
            "yesterday",
            "-5",
            "2023-11-14T22:13:20",
            "2023-11-14",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+1:00",
            "2023-11-14T22:13:20+01:60",
            "2023-11-14X22:13:20Z",
            "2023-11-14T22:13:20Zjunk",
            "２０２３-11-14T22:13:20Z",
        ] {
            assert!(parse_epoch_ms(text).is_err(), "{text:?} parsed");
        }
        let error = format!("{:#}", parse_epoch_ms("2023-11-14T22:13:20").unwrap_err());
        assert!(error.contains("no zone"), "{error}");
    }
}
