//! How a script is called and how its reply is read: the scripts as loaded,
//! one `EVALSHA` per call, and the tagged replies every script gives
//! (`{'<word>', values…}`, see each script's header).

use redis::{FromRedisValue, ParsingError, Script, Value};

use super::StoreError;
use super::connection::RedisConn;

/// The Lua scripts, with the helpers each one needs prepended. An
/// operation that touches a cascade's keys and its timer shard has a part
/// for each (`accept_record` and `arm`, …), called one after the other on a
/// Redis Cluster, where they live in different slots, and a whole script
/// (`accept`, …) that runs the parts together on one Redis server
/// (`scripts/*_whole.lua`). A part's call gives its KEYS and ARGV in the
/// order of its function's parameters (the `return …` line below); a whole
/// call in the layout its file gives.
pub(super) struct Scripts {
    pub accept: Script,
    pub accept_record: Script,
    pub arm: Script,
    pub commit: Script,
    pub commit_record: Script,
    pub index: Script,
    pub settle: Script,
    pub touch: Script,
    pub touch_record: Script,
    pub wake_held: Script,
    pub receipt: Script,
    pub receipt_record: Script,
    pub woken: Script,
    pub claim: Script,
    pub forget: Script,
    pub give_back: Script,
    pub limit: Script,
    pub rate: Script,
    pub segment: Script,
    pub accepted: Script,
    pub customer: Script,
}

/// A script of the given files, ended by `<last>` when given (a part's
/// call of its function).
macro_rules! script {
    ($($file:literal),+ ; $last:literal) => {
        Script::new(concat!($(include_str!(concat!("../scripts/", $file))),+, "\n", $last, "\n"))
    };
    ($($file:literal),+) => {
        Script::new(concat!($(include_str!(concat!("../scripts/", $file))),+))
    };
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            accept: script!(
                "wake.lua",
                "arm.lua",
                "accept.lua",
                "customer.lua",
                "accept_whole.lua"
            ),
            accept_record: script!("accept.lua";
                "return accept_record(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV, 4)"),
            arm: script!("wake.lua", "arm.lua";
                "return arm(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])"),
            commit: script!(
                "record.lua",
                "wake.lua",
                "index.lua",
                "settle.lua",
                "commit.lua",
                "commit_whole.lua"
            ),
            commit_record: script!("record.lua", "commit.lua";
                "return commit_record(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], \
                 ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV, 9)"),
            index: script!("index.lua"; "return index_send(KEYS[1], ARGV[1], ARGV[2], ARGV[3])"),
            settle: script!("wake.lua", "settle.lua";
                "return settle(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], \
                 ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10])"),
            touch: script!(
                "record.lua",
                "wake.lua",
                "settle.lua",
                "touch.lua",
                "touch_whole.lua"
            ),
            touch_record: script!("record.lua", "touch.lua";
                "return touch_record(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])"),
            wake_held: script!("wake.lua", "settle.lua";
                "return wake_if_held(KEYS[1], ARGV[1], ARGV[2], ARGV[3])"),
            receipt: script!(
                "record.lua",
                "wake.lua",
                "woken.lua",
                "receipt.lua",
                "receipt_whole.lua"
            ),
            receipt_record: script!("record.lua", "receipt.lua";
                "return receipt_record(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], \
                 ARGV, 5)"),
            woken: script!("wake.lua", "woken.lua";
                "return woken(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])"),
            claim: script!("wake.lua", "claim.lua"),
            forget: script!("wake.lua", "forget.lua"),
            give_back: script!("wake.lua", "give_back.lua"),
            limit: script!("limit.lua"),
            rate: script!("rate.lua"),
            segment: script!("segment.lua"),
            // A new cascade's stream entry and report counts, on its shard
            // (the last of an accept's calls on a cluster).
            accepted: script!("wake.lua";
                "append_events(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) \
                 add_counts(KEYS[2], ARGV[4], ARGV[5]) return { 'ok' }"),
            customer: script!("customer.lua";
                "index_customer(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) return { 'ok' }"),
        }
    }

    pub fn all(&self) -> [&Script; 21] {
        [
            &self.accept,
            &self.accept_record,
            &self.arm,
            &self.commit,
            &self.commit_record,
            &self.index,
            &self.settle,
            &self.touch,
            &self.touch_record,
            &self.wake_held,
            &self.receipt,
            &self.receipt_record,
            &self.woken,
            &self.claim,
            &self.forget,
            &self.give_back,
            &self.limit,
            &self.rate,
            &self.segment,
            &self.accepted,
            &self.customer,
        ]
    }
}

/// One script call: `EVALSHA` with its keys and arguments written straight
/// into the command (redis-rs's `ScriptInvocation` keeps each in a buffer of
/// its own and copies them all again to send: this runs for every
/// decision). A Redis that lost its scripts (a restart, a replica promoted)
/// gets the script loaded and the call made again. Built only by the
/// argument structs of the scripts, which know their KEYS and ARGV.
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

    pub async fn invoke<T: FromRedisValue>(&self, conn: &mut RedisConn) -> redis::RedisResult<T> {
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
