//! The connection to Redis: one server (a connection manager that
//! reconnects by itself) or a Redis Cluster (redis-rs's cluster client,
//! which follows MOVED and ASK redirects, refreshes the slot map and finds a
//! promoted replica). The store speaks to either through `RedisConn`.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Where Redis is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One server: `redis://host:port`, `redis+unix:///path`.
    Single(String),
    /// A Redis Cluster, by some of its nodes (the rest are found from them).
    Cluster(Vec<String>),
}

impl Target {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }

    /// Whether every connection is over TLS (`rediss://`).
    pub fn uses_tls(&self) -> bool {
        let tls = |url: &str| url.starts_with("rediss://");
        match self {
            Target::Single(url) => tls(url),
            Target::Cluster(nodes) => nodes.iter().all(|n| tls(n)),
        }
    }

    /// Where it is, for logs (nodes joined by commas).
    pub fn describe(&self) -> String {
        match self {
            Target::Single(url) => url.clone(),
            Target::Cluster(nodes) => format!("cluster {}", nodes.join(",")),
        }
    }
}

impl From<&str> for Target {
    fn from(url: &str) -> Self {
        Target::Single(url.to_owned())
    }
}

/// A multiplexed connection to one server or to a cluster. Cheap to clone.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

impl RedisConn {
    /// A connection trusting the system's certificate authorities for
    /// `rediss://`.
    pub async fn open(target: &Target) -> redis::RedisResult<RedisConn> {
        RedisConn::open_trusting(target, None).await
    }

    /// A connection that, for `rediss://`, trusts only the CA certificates
    /// of `ca_pem` (PEM) when given (`redis.ca_file`), else the system's.
    pub async fn open_trusting(
        target: &Target,
        ca_pem: Option<&[u8]>,
    ) -> redis::RedisResult<RedisConn> {
        let certs = |pem: &[u8]| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        };
        match target {
            Target::Single(url) => {
                let client = match ca_pem {
                    Some(pem) => redis::Client::build_with_tls(url.as_str(), certs(pem))?,
                    None => redis::Client::open(url.as_str())?,
                };
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(2));
                Ok(RedisConn::Single(
                    ConnectionManager::new_with_config(client, config).await?,
                ))
            }
            Target::Cluster(nodes) => {
                // Retries ride out a failover: a primary's replica takes
                // over within the cluster's node timeout (seconds). The
                // waits grow 0.2 s, 0.4 s, … up to 2 s: about 11 s in all.
                let mut builder =
                    redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
                        .connection_timeout(CONNECT_TIMEOUT)
                        .response_timeout(RESPONSE_TIMEOUT)
                        .retries(8)
                        .min_retry_wait(100)
                        .max_retry_wait(2_000)
                        .retry_wait_formula(100, 2);
                if let Some(pem) = ca_pem {
                    builder = builder.certs(certs(pem));
                }
                let client = builder.build()?;
                Ok(RedisConn::Cluster(client.get_async_connection().await?))
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}
