//! Wakes one cascade: load it, let the core decide, store the decision, carry
//! out the send it orders (limits first), and feed the outcome back, until
//! the cascade waits for time or a receipt.
//!
//! A step goes out once: only the instance that holds a cascade sends. It
//! holds it either by the scheduler's claim (a lease in the timer set, which
//! the claim took atomically with reading the receipts, contract §6) or by having
//! stored the send's in-flight state. The first send of a claimed wake-up
//! goes out on the lease, and the one commit after it stores the decision
//! and the outcome together; if this instance dies in between, the next
//! claimant finds the lease run out (`Event::ClaimLapsed`) and the core
//! counts that send as uncertain. Every other send stores its in-flight
//! state first: a later send of the same wake-up, a wake-up of a lapsed
//! claim, and one whose channel could not finish well inside what is left
//! of the lease or would have to wait for its throughput.

mod send;
mod start;
mod tally;
mod throughput;

pub use tally::price_of;
use tally::{tally, tally_new};

pub use start::{FirstSend, Started};
mod wakeup;

use wakeup::Wakeup;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::alarm::Alarm;
use super::clock::Clock;
use super::internal_events::{Lifecycle, ProviderAnswered};
use super::store::{
    CascadeStore, Claimed, CommitReply, CommitRequest, Lease, Loaded, ProviderMessage, Store,
    StoreError,
};
use super::telemetry::Telemetry;
use crate::channels::{Admission, Outbound, Outgoing};
use crate::config::{Catalog, ChannelConfig};
use crate::core::{
    Cascade, ChannelKind, Context, Decision, Entry, Event, Phase, SendOrder, SendOutcome, decide,
};
use crate::report::Count;

/// Everything a wake-up needs; shared by the scheduler's tasks.
/// Generic over the store (`CascadeStore`): the daemon's is Redis.
pub struct Worker<S = Store> {
    pub store: S,
    pub catalog: Arc<ArcSwap<Catalog>>,
    pub outbound: Outbound,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Telemetry,
    /// Cancelled when the daemon stops: a send still waiting for its
    /// channel's rate is handed back rather than left in flight.
    pub shutdown: CancellationToken,
    /// Tells this instance's scheduler of wake-ups stored sooner than it
    /// planned to look.
    pub alarm: Alarm,
}

/// Where one wake-up stands. Each stage is one short step
/// (`Wakeup::advance`) that returns the next; a wake-up runs until it is
/// `Settled`: the cascade waits for time or a receipt.
enum Stage {
    /// Read the cascade, then decide on the event.
    Load(Event),
    /// Let the core decide on the state after the event, and store that.
    Decide(Box<Loaded>, Event),
    /// A decision stored as `version` (or held on the claim, `Unsaved`):
    /// settle its send's channel and the customer's limits.
    Decided(Box<Loaded>, Decision, i64),
    /// A send whose channel and limits are settled: admit it and request it.
    Send(Box<Send>),
    /// Nothing more to do in this wake-up.
    Settled,
}

/// A send about to go out.
struct Send {
    /// The configuration it was decided with (its channel is in it).
    catalog: Arc<Catalog>,
    loaded: Box<Loaded>,
    /// The state the decision that ordered it left (in flight).
    cascade: Cascade,
    order: SendOrder,
    version: i64,
    /// Its place in the customer's limits, given back if it does not go out.
    member: String,
}

impl Send {
    /// The state the send leaves, to decide its outcome on.
    fn after(self) -> Box<Loaded> {
        let mut loaded = self.loaded;
        loaded.cascade = self.cascade;
        loaded.version = self.version;
        loaded
    }
}

/// What deciding on a loaded state came to.
enum Decided {
    /// Stored as this version; carry out its send, if any.
    Stored(Decision, i64),
    /// Not stored: a send decided on the claim, which may go out on its
    /// lease (the `Send` stage settles that right before sending).
    OnClaim(Decision),
    /// The state moved on meanwhile: load it and decide again.
    Again,
    /// Nothing more to do in this wake-up.
    Settled,
}

/// A decision not stored yet, whose send goes (or went) out on the claim's
/// lease: stored with the next commit, which must find the version it was
/// made on.
struct Unsaved {
    cascade: Cascade,
    entries: Vec<Entry>,
    version: i64,
    /// The lease its send went out on, once it did.
    lease: Option<Lease>,
}

/// Most stages one wake-up runs before it yields (a send and its outcome
/// take four; conflicts a few more).
const MAX_STAGES: usize = 64;

/// A send goes out on a claim's lease only when its channel's timeout fits
/// in what is left of the lease with this to spare: for the commit after
/// it, and for clocks that differ between instances.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The first pause before storing a send's outcome again after Redis failed.
const COMMIT_RETRY_FIRST: Duration = Duration::from_millis(100);

impl<S: CascadeStore> Worker<S> {
    /// Handles a due timer (or a poke after a receipt) for a cascade the
    /// scheduler claimed and read in one round trip. A state that is stale
    /// by now is caught by the commit's version check.
    pub async fn wake_claimed(&self, mut claimed: Claimed) -> Result<(), StoreError> {
        let lapsed = claimed.lapsed_claim_at_ms.is_some();
        let loaded = match self.store.load_claimed(&mut claimed).await {
            Ok(Some(loaded)) => loaded,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.give_back(&claimed.id, &claimed.lease, lapsed).await;
                return Err(e);
            }
        };
        let event = match claimed.lapsed_claim_at_ms {
            Some(claimed_at_ms) => Event::ClaimLapsed { claimed_at_ms },
            None => Event::TimerDue,
        };
        let claim = Claim {
            lease: claimed.lease,
            version: loaded.version,
            lapsed,
            // A lapsed claim's wake-up sends nothing on its own lease: the
            // core replays what the lapsed holder did first.
            may_send: !lapsed,
        };
        let wakeup = Wakeup::new(self, &claimed.id, Some(claim));
        // Boxed: the scheduler spawns this, and a task is moved a few times
        // on its way into the runtime; the state machine is some 5 KB.
        Box::pin(wakeup.run(Stage::Decide(Box::new(loaded), event))).await
    }

    /// Carries out a decision already stored as version `version` (intake
    /// stores a new cascade together with its first step), starting from
    /// `before`, the state it was made on.
    pub async fn carry_out(
        &self,
        id: &str,
        before: Loaded,
        decision: Decision,
        version: i64,
    ) -> Result<(), StoreError> {
        self.log(id, &before, &decision.entries);
        Wakeup::new(self, id, None)
            .run(Stage::Decided(Box::new(before), decision, version))
            .await
    }

    /// Gives back the lease of a claim nothing was stored or sent under,
    /// unless the claim was itself found lapsed: that mark stays, since the
    /// lapsed holder's send may still have gone out.
    async fn give_back(&self, id: &str, lease: &Lease, lapsed: bool) {
        if lapsed {
            return;
        }
        if let Err(e) = self.store.release_claim(id, lease).await {
            tracing::warn!(notification_id = id, error = %e, "cannot give back the claim of a failed wake-up; it will count as lapsed");
        }
    }

    /// A wake-up stored for `id`: its scheduler hears of it if it is sooner
    /// than it planned to look.
    fn stored_wake(&self, id: &str, wake_at_ms: Option<i64>) {
        if let Some(at) = wake_at_ms {
            let shard = super::keys::shard_of(id, self.store.shards());
            self.alarm.note(shard, at);
        }
    }

    fn log(&self, id: &str, loaded: &Loaded, entries: &[Entry]) {
        self.telemetry.emit(Lifecycle {
            notification_id: id,
            customer_id: &loaded.customer_id,
            policy: &loaded.policy.name,
            entries,
        });
    }
}

/// The outcome of a send whose channel a reload removed.
fn gone_channel(order: &SendOrder) -> Event {
    Event::SendResult {
        step: order.step,
        channel: order.channel.clone(),
        outcome: SendOutcome::Misconfigured {
            reason: format!("channel `{}` is no longer configured", order.channel),
        },
    }
}

/// The scheduler's claim on the cascade a wake-up runs for.
#[derive(Clone, Copy)]
struct Claim {
    lease: Lease,
    /// The version the claim read.
    version: i64,
    /// The claim found the cascade under a lapsed lease.
    lapsed: bool,
    /// Whether the wake-up's first send may go out on the lease.
    may_send: bool,
}

/// A state loaded again after a commit was refused. A decision sent on the
/// lease and not yet stored is still ours to store if nobody else moved the
/// cascade on (same version): decide on from it. Otherwise another instance
/// took the cascade over (the lease ran out), and that decision is dropped.
fn resume(id: &str, mut loaded: Box<Loaded>, unsaved: &mut Option<Unsaved>) -> Box<Loaded> {
    if let Some(u) = unsaved {
        if u.version == loaded.version {
            loaded.cascade = u.cascade.clone();
        } else {
            tracing::warn!(
                notification_id = id,
                "a send made on a claim's lease could not be stored: another instance took the cascade over after the lease ran out"
            );
            *unsaved = None;
        }
    }
    loaded
}

fn outcome_word(o: &SendOutcome) -> &'static str {
    match o {
        SendOutcome::Sent { .. } => "sent",
        SendOutcome::Transient { .. } => "transient",
        SendOutcome::RateLimited { .. } => "rate_limited",
        SendOutcome::Permanent { .. } => "permanent",
        SendOutcome::Misconfigured { .. } => "misconfigured",
        SendOutcome::Ambiguous { .. } => "ambiguous",
    }
}
