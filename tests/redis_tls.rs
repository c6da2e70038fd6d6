//! Redis over TLS (`rediss://`, `redis.ca_file`): a throwaway CA and
//! server certificate made with the `openssl` command, a `redis-server`
//! child listening only on a TLS port, and the daemon run against it
//! through a whole cascade. Skipped, saying why, when this machine's
//! `redis-server` or `openssl` cannot do it.
//!
//! Only one server: a Redis Cluster over TLS (`redis.cluster` with
//! `rediss://` nodes) takes the same CA through the cluster client, but no
//! test starts one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cascade::runtime::keys::Keys;
use cascade::runtime::store::{Store, Target};
use serde_json::json;

use common::{CleanUp, DELIVERY_DELAY, Running, TestConfig, fake_receiver, unique};

/// A `redis-server` child on a TLS port, killed and reaped when dropped.
struct TlsRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A CA (`ca.crt`) and a server certificate it signed for 127.0.0.1
/// (`server.crt`, `server.key`), in `dir`.
fn make_certificates(dir: &Path) -> Result<(), String> {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    openssl(
        dir,
        &[
            &["req", "-x509", "-nodes", "-days", "1"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=cascade test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    )?;
    openssl(
        dir,
        &[
            &["req", "-nodes"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    )?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-extfile",
            "server.ext",
        ],
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `redis-server` with TLS only; `Err` says why it cannot here.
fn start_tls_redis() -> Result<TlsRedis, String> {
    let dir = std::env::temp_dir().join(unique("redis-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir)?;
    let port = free_port();
    let log = dir.join("redis.log");
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string()])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no", "--dir", "."])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run redis-server: {e}"))?;
    let mut redis = TlsRedis { child, port, dir };
    let started = Instant::now();
    loop {
        if let Some(status) = redis.child.try_wait().unwrap() {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "redis-server --tls-port exited ({status}); does this build support TLS?\n{said}"
            ));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(redis);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis-server did not listen on its TLS port"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_a_cascade_on_redis_over_tls_trusting_a_private_ca() {
    let redis = match start_tls_redis() {
        Ok(r) => r,
        Err(why) => {
            eprintln!("SKIPPED: Redis over TLS is not tested on this machine: {why}");
            return;
        }
    };
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let ca_file = redis.dir.join("ca.crt");
    let ca = std::fs::read(&ca_file).unwrap();
    let keys = || Keys::new(&unique("tls-probe"), 2);

    // The server's certificate is signed by no CA the system trusts: without
    // the CA file the connection is refused, and plain text gets nowhere.
    let target = Target::Single(url.clone());
    assert!(
        Store::connect(&target, keys(), 60_000).await.is_err(),
        "a certificate of an unknown CA must be refused"
    );
    let plain = Target::Single(format!("redis://127.0.0.1:{}", redis.port));
    assert!(
        tokio::time::timeout(
            Duration::from_secs(10),
            Store::connect_trusting(&plain, Some(&ca), keys(), 60_000)
        )
        .await
        .map_or(true, |r| r.is_err()),
        "a TLS port does not speak plain Redis"
    );
    Store::connect_trusting(&target, Some(&ca), keys(), 60_000)
        .await
        .expect("connects trusting the CA file");

    // The daemon, configured by the file, through a whole cascade.
    let (receiver, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("redis-tls", &receiver, "", DELIVERY_DELAY);
    let _clean = CleanUp(cfg.name.clone());
    let toml = std::fs::read_to_string(cfg.path()).unwrap();
    let toml: String = toml
        .lines()
        .filter(|l| !l.starts_with("cluster = ["))
        .map(|l| {
            if l == "[redis]" {
                format!(
                    "[redis]\nurl = \"{url}\"\nca_file = \"{}\"\n",
                    ca_file.display()
                )
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    cfg.write("cascade.toml", &toml);
    assert_eq!(
        cfg.catalog().settings.redis.ca_pem.as_deref(),
        Some(&ca[..])
    );
    let run = Running::start(cfg).await;
    let id = run.id("n");
    run.publish(&json!({
        "id": id,
        "policy": "delivery_delay",
        "customer": { "id": "c-1", "contacts": { "vk": "123456789", "sms": "+79161234567" } },
        "content": { "text": "Заказ задерживается" }
    }))
    .await;
    let sent = run.wait_entries(&id, "sent", 1).await;
    assert_eq!(sent[0].channel.as_deref(), Some("vk"));
    assert!(
        !received.0.lock().unwrap().is_empty(),
        "the VK step reached the receiver"
    );
}
