//! W1 intake: N notifications pre-published, then first-step sends per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::measure::watch;
use super::rig::{Rig, publish};
use super::{BenchError, BenchOptions, Intake, rate};
use crate::dev::fakes::vk::FakeVk;
use crate::dev::fakes::webhook::FakeWebhook;
use crate::runtime::clock::SystemClock;

pub(super) async fn w1(opts: &BenchOptions) -> Result<Intake, BenchError> {
    let vk = FakeVk::start().await;
    let sms = FakeWebhook::start().await?;
    let rig = Rig::new("w1", opts, &vk.base_url(), sms.url())?;
    let result = async {
        let n = opts.w1_n;
        let published = publish(&opts.amqp_url, &rig.intake, &rig.intake.queue, n, |i| {
            rig.body(i)
        })
        .await?;
        let started = Instant::now();
        let daemon = rig.start(opts, Arc::new(SystemClock::default())).await?;
        let (first, last, sent) = watch(n, opts.timeout, || vk.received_count()).await;
        daemon.stop(Duration::from_secs(5)).await;
        Ok::<_, BenchError>(Intake {
            n,
            publish_rate: rate(n, published),
            sent,
            first_send: first.map(|f| f - started),
            elapsed: match (first, last) {
                (Some(f), Some(l)) => l - f,
                (Some(f), None) => f.elapsed(),
                _ => Duration::ZERO,
            },
        })
    }
    .await;
    rig.clean(opts).await;
    result
}
