//! `[replies]` and `[business_hours]` in `cascade.toml`: where customers'
//! replies are handed to staff, how staff channels reach staff, and when
//! staff are at work (`core::replies`).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::check::FileCheck;
use super::secrets::{Role, Source, judge};
use super::values::parse_timezone;
use crate::core::QuietHours;

/// `[replies]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplies {
    /// The channel every customer reply is handed to (a helpdesk webhook).
    pub sink: Option<Spanned<String>>,
    /// Staff contacts: contact key → address, as a customer's contacts are
    /// (`telegram = "${SUPPORT_CHAT_ID}"`).
    #[serde(default)]
    pub staff: BTreeMap<String, Spanned<String>>,
    /// Signs the links where staff mark a reply answered.
    pub link_secret: Option<Spanned<String>>,
}

/// `[business_hours]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBusinessHours {
    pub hours: Option<Spanned<String>>,
    pub days: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
}

/// Replies and staff, validated.
#[derive(Clone, Debug, Default)]
pub struct Replies {
    pub sink: Option<String>,
    /// Signs the answer links (`http::replies`); in use whenever `sink` is.
    pub link_secret: String,
    pub staff: BTreeMap<String, String>,
    pub business: Option<BusinessHours>,
}

/// When staff are at work: the quiet hours outside them, in their zone.
#[derive(Clone, Debug)]
pub struct BusinessHours {
    pub quiet: QuietHours,
    pub timezone_name: String,
}

/// `[replies]` and `[business_hours]`; `None` when either is wrong (each
/// problem reported to `check`). `CASCADE_REPLIES_SINK` overrides the sink.
pub(super) fn read_replies(
    raw: &RawReplies,
    business: Option<&RawBusinessHours>,
    default_timezone: &str,
    check: &mut FileCheck,
) -> Option<Replies> {
    let before = check.errors.len();
    let sink = match ((check.env)("CASCADE_REPLIES_SINK"), &raw.sink) {
        (Some(v), _) => Some(v),
        (None, Some(v)) => check.text(v),
        (None, None) => None,
    }
    .map(|s| s.trim().to_owned())
    .filter(|s| !s.is_empty());
    let mut staff = BTreeMap::new();
    for (key, value) in &raw.staff {
        if let Some(v) = check.text(value) {
            if v.trim().is_empty() {
                check.err(
                    value.span(),
                    format!(
                        "[replies] staff.{key} is empty; give the staff's address or remove it"
                    ),
                );
            }
            staff.insert(key.clone(), v.trim().to_owned());
        }
    }
    let business = business.and_then(|b| read_business_hours(b, default_timezone, check));
    let link_secret = match ((check.env)("CASCADE_REPLIES_LINK_SECRET"), &raw.link_secret) {
        (Some(v), _) => Some((v, Source::Env("CASCADE_REPLIES_LINK_SECRET".into()))),
        (None, Some(v)) => check.text(v).map(|t| (t, Source::written(v.get_ref()))),
        (None, None) => Some((String::new(), Source::File { var: None })),
    };
    let link_secret = link_secret.map(|(value, source)| {
        if sink.is_some() {
            let problem = judge(
                check.file,
                "replies.link_secret",
                source,
                &value,
                Role::Guard,
                false,
            );
            check.secrets.extend(problem);
        }
        value
    });
    (check.errors.len() == before).then_some(Replies {
        sink,
        link_secret: link_secret?,
        staff,
        business,
    })
}

fn read_business_hours(
    raw: &RawBusinessHours,
    default_timezone: &str,
    check: &mut FileCheck,
) -> Option<BusinessHours> {
    let Some(hours) = &raw.hours else {
        check.err_file("[business_hours] needs hours, e.g. hours = \"09:00-18:00\"");
        return None;
    };
    let days = raw
        .days
        .as_ref()
        .map(|d| d.get_ref().as_str())
        .unwrap_or("mon-fri");
    let quiet = match QuietHours::outside_business(hours.get_ref(), days) {
        Ok(q) => q,
        Err(e) => {
            let span = match (&raw.days, e.0.contains("weekdays")) {
                (Some(d), true) => d.span(),
                _ => hours.span(),
            };
            check.err(span, format!("[business_hours] {e}"));
            return None;
        }
    };
    let timezone_name = match &raw.timezone {
        Some(tz) => {
            if let Err(msg) = parse_timezone(tz.get_ref()) {
                check.err(tz.span(), msg);
                return None;
            }
            tz.get_ref().trim().to_owned()
        }
        None => default_timezone.to_owned(),
    };
    Some(BusinessHours {
        quiet,
        timezone_name,
    })
}
