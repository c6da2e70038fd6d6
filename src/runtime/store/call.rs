//! How a script is called and how its reply is read: the scripts as loaded,
//! one `EVALSHA` per call, and the tagged replies every script gives
//! (`{'<word>', values…}`, see each script's header).

use redis::aio::ConnectionManager;
use redis::{FromRedisValue, ParsingError, Script, Value};

use super::StoreError;

/// The Lua scripts, with the helpers each one needs prepended.
pub(super) struct Scripts {
    pub accept: Script,
    pub claim: Script,
    pub forget: Script,
    pub commit: Script,
    pub receipt: Script,
    pub limit: Script,
    pub rate: Script,
    pub touch: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            accept: Script::new(concat!(
                include_str!("../scripts/wake.lua"),
                include_str!("../scripts/accept.lua")
            )),
            claim: Script::new(concat!(
                include_str!("../scripts/wake.lua"),
                include_str!("../scripts/claim.lua")
            )),
            forget: Script::new(include_str!("../scripts/forget.lua")),
            commit: Script::new(concat!(
                include_str!("../scripts/record.lua"),
                include_str!("../scripts/wake.lua"),
                include_str!("../scripts/commit.lua")
            )),
            receipt: Script::new(concat!(
                include_str!("../scripts/record.lua"),
                include_str!("../scripts/wake.lua"),
                include_str!("../scripts/receipt.lua")
            )),
            limit: Script::new(include_str!("../scripts/limit.lua")),
            rate: Script::new(include_str!("../scripts/rate.lua")),
            touch: Script::new(concat!(
                include_str!("../scripts/record.lua"),
                include_str!("../scripts/wake.lua"),
                include_str!("../scripts/touch.lua")
            )),
        }
    }

    pub fn all(&self) -> [&Script; 8] {
        [
            &self.accept,
            &self.claim,
            &self.forget,
            &self.commit,
            &self.receipt,
            &self.limit,
            &self.rate,
            &self.touch,
        ]
    }
}

/// One script call: `EVALSHA` with its keys and arguments written straight
/// into the command (redis-rs's `ScriptInvocation` keeps each in a buffer of
/// its own and copies them all again to send: this runs for every
/// decision). A Redis that lost its scripts (a restart) gets the script
/// loaded and the call made again. Built only by the argument structs of
/// the scripts, which know their KEYS and ARGV.
pub(super) struct Call<'s> {
    script: &'s Script,
    cmd: redis::Cmd,
}

impl<'s> Call<'s> {
    pub fn new(script: &'s Script, keys: &[&str]) -> Self {
        Call::with_room(script, keys, 8, 128)
    }

    /// A call with room made for `args` more arguments of `bytes` in all,
    /// so the command is not grown piece by piece as they are added.
    pub fn with_room(script: &'s Script, keys: &[&str], args: usize, bytes: usize) -> Self {
        let key_bytes: usize = keys.iter().map(|k| k.len()).sum();
        let mut cmd = redis::Cmd::with_capacity(3 + keys.len() + args, 64 + key_bytes + bytes);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys.len());
        for k in keys {
            cmd.arg(*k);
        }
        Call { script, cmd }
    }

    pub fn arg(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    pub async fn invoke<T: FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
    ) -> redis::RedisResult<T> {
        match self.cmd.query_async(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.script.load_async(conn).await?;
                self.cmd.query_async(conn).await
            }
            answer => answer,
        }
    }
}

/// A script's reply: what it did, or why the record it had to read could
/// not be read (`{'unreadable', why}`: an unknown layout, a broken record).
pub(super) enum Reply<T> {
    Did(T),
    Unreadable(String),
}

impl<T> Reply<T> {
    /// The reply, or the record's problem as `StoreError::Corrupt`.
    pub fn about(self, id: &str) -> Result<T, StoreError> {
        match self {
            Reply::Did(t) => Ok(t),
            Reply::Unreadable(why) => Err(StoreError::Corrupt { id: id.into(), why }),
        }
    }
}

/// A script's tagged reply as its word and the values after it.
pub(super) struct Tagged {
    pub word: String,
    pub values: Vec<Value>,
}

impl Tagged {
    pub fn read(v: Value) -> Result<Tagged, ParsingError> {
        let mut values: Vec<Value> = FromRedisValue::from_redis_value(v)?;
        if values.is_empty() {
            return Err("a script replied with an empty list".to_owned().into());
        }
        let word: String = FromRedisValue::from_redis_value(values.remove(0))?;
        Ok(Tagged { word, values })
    }

    /// The `i`th value after the word.
    pub fn value<V: FromRedisValue>(&self, i: usize) -> Result<V, ParsingError> {
        let v = self
            .values
            .get(i)
            .ok_or_else(|| ParsingError::from(format!("`{}` lacks value {i}", self.word)))?;
        FromRedisValue::from_redis_value_ref(v)
    }

    pub fn unexpected<X>(&self) -> Result<X, ParsingError> {
        Err(format!("a script replied with the unknown word `{}`", self.word).into())
    }
}

impl<T: FromTagged> FromRedisValue for Reply<T> {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let tagged = Tagged::read(v)?;
        if tagged.word == "unreadable" {
            return Ok(Reply::Unreadable(tagged.value(0)?));
        }
        T::from_tagged(tagged).map(Reply::Did)
    }
}

/// A reply enum read from a script's tagged reply.
pub(super) trait FromTagged: Sized {
    fn from_tagged(t: Tagged) -> Result<Self, ParsingError>;
}

/// Implements `FromRedisValue` for a reply enum through `FromTagged`, for
/// scripts that read no record (and so never answer `unreadable`).
macro_rules! plain_reply {
    ($t:ty) => {
        impl redis::FromRedisValue for $t {
            fn from_redis_value(v: redis::Value) -> Result<Self, redis::ParsingError> {
                <$t as super::call::FromTagged>::from_tagged(super::call::Tagged::read(v)?)
            }
        }
    };
}
pub(super) use plain_reply;
