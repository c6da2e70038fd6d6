//! The store's errors, and which of them are about the data a call touched
//! rather than an outage.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// `why` may be serde_json's text, which quotes the stored values.
    #[error("stored data for {id} is unreadable: {}", crate::pii::scrub(why))]
    Corrupt { id: String, why: String },
}

impl StoreError {
    /// Whether Redis answered with an error about the data a call touched —
    /// a key of the wrong type (`WRONGTYPE`), a script that failed on it —
    /// rather than failed to answer: the sentence to give, or `None`. Only
    /// such an answer counts against an intake message (`poison.rs`); an
    /// outage never does, so anything not known to be about the data is an
    /// outage: I/O, timeouts, `LOADING`, `READONLY`, `MASTERDOWN`,
    /// `TRYAGAIN`, `CLUSTERDOWN`, `BUSY`, `OOM`, `MISCONF`… (Redis before 7
    /// wraps an error inside a script in `ERR Error running script`, hence
    /// the look at its words.) The sentence names the error code and says no
    /// more: Redis's own detail could quote a value.
    pub fn about_the_data(&self) -> Option<String> {
        const OUTAGES: [&str; 9] = [
            "OOM",
            "READONLY",
            "LOADING",
            "MASTERDOWN",
            "CLUSTERDOWN",
            "TRYAGAIN",
            "BUSY",
            "MISCONF",
            "NOREPLICAS",
        ];
        let StoreError::Redis(e) = self else {
            return None;
        };
        let code = e.code()?;
        let detail = e.detail().unwrap_or("");
        let outage = detail
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| OUTAGES.contains(&word));
        let in_script = detail.contains("script");
        match code {
            "WRONGTYPE" => Some(
                "Redis answered WRONGTYPE: a key of this notification holds the wrong kind of value"
                    .to_owned(),
            ),
            "ERR" if in_script && !outage => {
                let wrapped = if detail.contains("WRONGTYPE") {
                    " (WRONGTYPE: a key of this notification holds the wrong kind of value)"
                } else {
                    ""
                };
                Some(format!("a Redis script failed on its data{wrapped}"))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{ErrorKind, RedisError, ServerErrorKind};

    fn err(detail: &str) -> StoreError {
        StoreError::Redis(RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            detail.to_owned(),
        )))
    }

    fn coded(code: &str, detail: &str) -> StoreError {
        StoreError::Redis(redis::make_extension_error(
            code.to_owned(),
            Some(detail.to_owned()),
        ))
    }

    #[test]
    fn errors_about_the_data_are_told_from_outages() {
        let about = [
            coded(
                "WRONGTYPE",
                "Operation against a key holding the wrong kind of value script: 3f2a, on @user_script:25.",
            ),
            // Redis 6 wraps an error inside a script.
            err(
                "Error running script (call to f_3f2a): @user_script:25: WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            err(
                "user_script:7: attempt to compare nil with number script: 3f2a, on @user_script:7.",
            ),
        ];
        for e in &about {
            let sentence = e.about_the_data();
            assert!(sentence.is_some(), "{e}");
        }
        let outages = [
            StoreError::Redis(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            ))),
            StoreError::Redis(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ))),
            coded("OOM", "command not allowed when used memory > 'maxmemory'."),
            coded("BUSY", "Redis is busy running a script."),
            StoreError::Redis(RedisError::from((
                ErrorKind::Server(ServerErrorKind::ReadOnly),
                "You can't write against a read only replica.",
            ))),
            StoreError::Redis(RedisError::from((
                ErrorKind::Server(ServerErrorKind::BusyLoading),
                "Redis is loading the dataset in memory",
            ))),
            err(
                "Error running script (call to f_3f2a): @user_script:12: -OOM command not allowed when used memory > 'maxmemory'",
            ),
            err("max number of clients reached"),
            StoreError::Corrupt {
                id: "n-1".into(),
                why: "policy".into(),
            },
        ];
        for e in &outages {
            assert_eq!(e.about_the_data(), None, "{e}");
        }
    }
}
