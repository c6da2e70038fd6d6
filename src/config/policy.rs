//! `policies/<name>.toml`: one escalation policy, named by its file.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::settings::RawLimits;

/// A policy file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub description: Option<String>,
    pub stop_on: Option<Spanned<Vec<Spanned<String>>>>,
    pub expire_after: Option<Spanned<String>>,
    pub wait_clock: Option<Spanned<String>>,
    pub on_limit: Option<Spanned<String>>,
    pub steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
    pub limits: Option<RawLimits>,
    pub quiet_hours: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub channel: Option<Spanned<OneOrMany>>,
    pub wait: Option<Spanned<String>>,
    pub wait_clock: Option<Spanned<String>>,
    pub on_limit: Option<Spanned<String>>,
}

/// `channel = "vk"` or `channel = ["telegram", "whatsapp"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}
