//! The small value languages of the configuration files: durations (`30m`,
//! `1d`), rates (`4/1h`), IANA time zones and `${ENV}` interpolation.

use std::time::Duration;

use jiff::tz::TimeZone;

use crate::core::Rate;

/// Parses a human duration: `90s`, `30m`, `2h`, `1d` (24 hours), `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("an empty duration; write one like \"30m\", \"2h\" or \"1d\"".into());
    }
    // A bare number is ambiguous (seconds? minutes?): ask for a unit.
    if t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{t}` has no unit; write e.g. \"{t}s\", \"{t}m\" or \"{t}h\""
        ));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("`{t}` is not a duration ({e}); write one like \"90s\", \"30m\", \"2h\" or \"1d\"")
    })
}

pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Parses a rate `COUNT/DURATION`: `4/1h`, `3/1d`, `30/1s`.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad =
        || format!("`{s}` is not a rate; write it as COUNT/DURATION, e.g. \"4/1h\" or \"3/1d\"");
    let (count, per) = s.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!(
            "`{s}` allows nothing; the count must be at least 1"
        ));
    }
    let per = per.trim();
    // "10/s" reads naturally; treat a bare unit as one of it.
    let per = if per.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        format!("1{per}")
    } else {
        per.to_owned()
    };
    let per = parse_duration(&per).map_err(|e| format!("in rate `{s}`: {e}"))?;
    let per_ms = duration_ms(per);
    if per_ms < 1 {
        return Err(format!("`{s}` has a zero-length window"));
    }
    Ok(Rate { count, per_ms })
}

/// Looks up an IANA time zone by name.
pub fn parse_timezone(s: &str) -> Result<TimeZone, String> {
    TimeZone::get(s.trim()).map_err(|_| {
        format!("`{s}` is not an IANA time zone; write one like \"Europe/Moscow\" or \"Asia/Yekaterinburg\"")
    })
}

/// Replaces `${NAME}` (and `${NAME:-default}`) with environment values.
/// Returns the byte offset (within `s`) and message of the first problem.
pub fn interpolate(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut offset = 0;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err((offset + start, "`${` is not closed; write `${NAME}`".into()));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err((
                offset + start,
                format!(
                    "`${{{inner}}}` is not a variable reference; names are letters, digits and `_`"
                ),
            ));
        }
        match env(name).or_else(|| default.map(str::to_owned)) {
            Some(v) => out.push_str(&v),
            None => {
                return Err((
                    offset + start,
                    format!(
                        "environment variable {name} is not set (referenced as `${{{name}}}`); export it, or write `${{{name}:-default}}`"
                    ),
                ));
            }
        }
        let consumed = start + 2 + end + 1;
        rest = &rest[consumed..];
        offset += consumed;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(
            parse_rate("4/1h").unwrap(),
            Rate {
                count: 4,
                per_ms: 3_600_000
            }
        );
        assert_eq!(
            parse_rate("30/s").unwrap(),
            Rate {
                count: 30,
                per_ms: 1000
            }
        );
        for bad in ["4", "0/1h", "x/1h", "4/forever", "4/0s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zones() {
        assert!(parse_timezone("Europe/Moscow").is_ok());
        assert!(parse_timezone("Mars/Olympus").unwrap_err().contains("IANA"));
    }

    #[test]
    fn env_interpolation() {
        let env = |k: &str| (k == "TOKEN").then(|| "s3cret".to_string());
        assert_eq!(
            interpolate("Bearer ${TOKEN}", &env).unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(interpolate("${MISSING:-x}", &env).unwrap(), "x");
        assert_eq!(interpolate("plain", &env).unwrap(), "plain");
        let (at, msg) = interpolate("id=${SMSRU_API_ID}", &env).unwrap_err();
        assert_eq!(at, 3);
        assert!(msg.contains("SMSRU_API_ID"), "{msg}");
        assert!(interpolate("${oops", &env).is_err());
        assert!(interpolate("${1A}", &env).is_err());
    }
}
