//! The keyed stateful evaluation of rise detection without allowed
//! lateness, and the gathering of per-worker tick counts on worker 0; the
//! local pre-aggregation before them is in `pre`.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyflow_dataflow::checkpoint::take_below;
use keyflow_dataflow::metrics::{Metrics, StepMetrics};
use keyflow_dataflow::run::Context;
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::stable_hash;
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::Key;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder};
use timely::dataflow::operators::Capability;

use super::chain::{read_chain, save_chain, Chain};
use super::pre::{PaneWeight, PartialStream};
use super::state::{AddError, Geometry, RiseSnapshot, RiseState};
use super::{RiseTick, Rising};

/// Output handles of the keyed half.
type Out<'a, D> = timely::dataflow::operators::generic::OutputBuilderSession<
    'a,
    EventTime,
    timely::container::CapacityContainerBuilder<Vec<(EventTime, D)>>,
>;

/// Keys handled per activation when evicting the pane that left the span,
/// or reading the next boundary's candidates ahead of its close (about a
/// millisecond of cache misses in a large table).
const SLICE: usize = 4096;

/// Capabilities for (rising, ticks).
type Caps = [Capability<EventTime>; 2];

/// Input held back until the next epoch's snapshot, by message time.
type Waiting<K> = BTreeMap<EventTime, (Caps, Vec<(EventTime, PaneWeight<K>)>)>;

/// What the keyed half keeps between activations.
struct Keyed<K> {
    state: RiseState<K>,
    /// Capabilities at the next boundary, while there is state.
    held: Option<Caps>,
    counts: Vec<u64>,
    /// The stable hashes of the pane weights being added, for their
    /// lookups' prefetches; empty between messages.
    hashes: Vec<u64>,
    future: u64,
    /// The step's counters: rising records sent on count as its output.
    counters: Arc<StepMetrics>,
}

impl<K: Key> Keyed<K> {
    /// Merges pane weights that travelled at a time `caps` can stand for.
    fn apply(
        &mut self,
        ctx: &Context,
        id: &str,
        geo: &Geometry,
        caps: &Caps,
        data: Vec<(EventTime, PaneWeight<K>)>,
    ) {
        let mut hashes = std::mem::take(&mut self.hashes);
        hashes.extend(data.iter().map(|(_, w)| w.hash));
        for (i, (_, w)) in data.into_iter().enumerate() {
            self.state
                .prefetch_before(i, 0, hashes.len(), |j| hashes[j]);
            self.add(ctx, id, w);
        }
        hashes.clear();
        self.hashes = hashes;
        // New weight can only move the next boundary earlier, and only to
        // one above this message's time.
        if let Some(next) = self.state.next_boundary() {
            let t = next * geo.slide;
            if self.held.as_ref().is_none_or(|h| *h[0].time() > t) {
                self.held = Some([caps[0].delayed(&t), caps[1].delayed(&t)]);
            }
        }
    }

    /// Adds one pane weight, counting what cannot be added.
    fn add(&mut self, ctx: &Context, id: &str, w: PaneWeight<K>) {
        match self.state.add(w.hash, w.key, w.pane, w.weight) {
            Ok(()) => {}
            Err(AddError::OutOfRange) => {
                self.future += 1;
                Metrics::add(&ctx.metrics.future, 1);
            }
            // Weight beyond 32 bits per key and pane is not real traffic:
            // count it as bad input and go on.
            Err(AddError::Overflow) => {
                Metrics::add(&ctx.metrics.bad, 1);
                tracing::warn!(
                    operator = %id,
                    pane = w.pane,
                    "skipped a weight that would take one key's pane past 4294967295"
                );
            }
        }
    }

    /// Evaluates every pending boundary `t` for which `ready(t)`.
    #[allow(clippy::too_many_arguments)]
    fn evaluate<P: Fn(&[u64]) -> bool>(
        &mut self,
        geo: &Geometry,
        min_first: u64,
        predicate: &P,
        rising_out: &mut Out<'_, Rising<K>>,
        ticks_out: &mut Out<'_, u64>,
        ready: impl Fn(EventTime) -> bool,
    ) {
        while let Some(caps) = self.held.as_ref() {
            let t = *caps[0].time();
            if !ready(t) {
                break;
            }
            let b = t / geo.slide;
            self.state.evict_before(b.saturating_sub(geo.span()));
            // With the panes that `close` left behind gone, the next
            // boundary may lie later (no weight in between) or there may
            // be none: what `finish` would have found right away.
            if self.state.next_boundary().is_none_or(|next| next > b) {
                self.hold_next(geo);
                continue;
            }
            let mut session = rising_out.session(&caps[0]);
            let passed = self.state.evaluate_close(
                b,
                geo,
                min_first,
                predicate,
                &mut self.counts,
                |k, c| {
                    session.give((
                        t,
                        Rising {
                            key: k.clone(),
                            t,
                            counts: c.to_vec(),
                        },
                    ))
                },
            );
            drop(session);
            Metrics::add(&self.counters.records_out, passed);
            ticks_out.session(&caps[1]).give((t, passed));
            // The pane that falls out of the span goes later, in slices
            // (`evict_some`), so that these results go out now.
            self.state.close(b, geo);
            self.hold_next(geo);
        }
    }

    /// Moves the held capabilities to the next boundary, or drops them
    /// when there is none.
    fn hold_next(&mut self, geo: &Geometry) {
        match self.state.next_boundary() {
            Some(next) => {
                let next = next * geo.slide;
                if let Some(caps) = self.held.as_mut() {
                    caps[0].downgrade(&next);
                    caps[1].downgrade(&next);
                }
            }
            None => self.held = None,
        }
    }
}

/// Rebuilds this worker's share of a checkpointed state: the keys it owns
/// under the current number of workers, from every old worker's part.
#[allow(clippy::too_many_arguments)]
fn restore<K: Key>(
    fresh: RiseState<K>,
    parts: &[Vec<u8>],
    read_blob: impl Fn(&str) -> keyflow_dataflow::Result<Vec<u8>>,
    id: &str,
    epoch: EventTime,
    geo: &Geometry,
    peers: usize,
    index: usize,
) -> keyflow_dataflow::Result<RiseState<K>> {
    let mut merged = fresh.snapshot();
    let keep = |h: u64| h as usize % peers == index;
    for part in parts {
        let restore = |mut full: RiseSnapshot<K>| {
            full.keys.retain(|(k, _)| keep(stable_hash(k)));
            full.reach = merged.reach;
            RiseState::restore(full)
        };
        let replay = |s: &mut RiseState<K>, ops| {
            s.replay(ops, geo, keep);
            Ok(())
        };
        let snap = read_chain(part, id, &read_blob, restore, replay)?.snapshot();
        merged.last = merged.last.max(snap.last);
        merged.keys.extend(snap.keys);
    }
    if !merged.keys.is_empty() {
        // Every boundary below the epoch was evaluated by the keys' old
        // owners; none of them may be evaluated again.
        let below = epoch.div_ceil(geo.slide).saturating_sub(1);
        merged.last = Some(merged.last.map_or(below, |l| l.max(below)));
    }
    RiseState::restore(merged).map_err(|reason| keyflow_dataflow::Error::Checkpoint {
        path: format!("step {id}").into(),
        reason,
    })
}

/// The keyed half: merges pane weights into [`RiseState`], holds one
/// capability per output at the next boundary to evaluate (only while there
/// is state), and evaluates each boundary once the frontier reaches it.
/// Returns the passing keys and, per worker and evaluated boundary, the
/// number of local keys that passed.
///
/// With checkpoints, input at or after the next epoch boundary waits until
/// progress passes the boundary; the state is then written as of it (every
/// boundary below it evaluated, nothing at or after it applied).
pub(crate) fn rise_panes<'scope, K: Key, P>(
    partials: PartialStream<'scope, K>,
    ctx: &Arc<Context>,
    id: &str,
    geo: Geometry,
    min_first: u64,
    every_window: bool,
    predicate: P,
) -> keyflow_dataflow::Result<(EventStream<'scope, Rising<K>>, EventStream<'scope, u64>)>
where
    P: Fn(&[u64]) -> bool + 'static,
{
    let scope = partials.scope();
    let (peers, index) = (scope.peers(), scope.index());
    let mut ckpt = ctx.checkpoint_step(index, id, &format!("rise `{id}`"))?;
    let mut state = RiseState::<K>::new(&geo, min_first, every_window);
    if let Some(epoch) = ckpt.as_ref().and_then(|k| k.restored_epoch()) {
        if let Some(k) = ckpt.as_ref() {
            let read = |name: &str| k.restored_blob(name);
            state = restore(
                state,
                k.restored_parts(),
                read,
                id,
                epoch,
                &geo,
                peers,
                index,
            )?;
        }
    }
    let mut builder = OperatorBuilder::new(format!("Rise({id})"), scope);
    let activator = scope.activator_for(builder.operator_info().address);
    let route = |(_, w): &(EventTime, PaneWeight<K>)| w.hash;
    let mut input = builder.new_input(partials, Exchange::new(route));
    let (rising_out, rising) = builder.new_output();
    let (ticks_out, ticks) = builder.new_output();
    let mut rising_out = OutputBuilder::from(rising_out);
    let mut ticks_out = OutputBuilder::from(ticks_out);
    let ctx = Arc::clone(ctx);
    let id = id.to_string();

    builder.build(move |initial| {
        let mut me = Keyed {
            state,
            held: None,
            counts: Vec::with_capacity(geo.windows),
            hashes: Vec::new(),
            future: 0,
            counters: ctx.metrics.step(&id),
        };
        if let [rising_cap, ticks_cap] = &initial[..] {
            if let Some(next) = me.state.next_boundary() {
                let t = next * geo.slide;
                me.held = Some([rising_cap.delayed(&t), ticks_cap.delayed(&t)]);
            }
        }
        let mut chain = Chain::default();
        // Input held back until the next epoch's snapshot, by time.
        let mut waiting: Waiting<K> = BTreeMap::new();
        move |frontiers| {
            let frontier = &frontiers[0];
            let mut rising_out = rising_out.activate();
            let mut ticks_out = ticks_out.activate();
            let gate = ckpt.as_mut().map(|k| k.clock().next());
            // The last boundary's eviction, a slice per activation: the
            // worker hands on that boundary's results and its progress
            // first, then drops the pane between batches of input.
            let evicting = me.state.evict_some(SLICE);
            let mut fed = false;
            input.for_each(|cap, data| {
                fed = true;
                let Some(&time) = cap.least() else { return };
                let caps = [cap.delayed(&time, 0), cap.delayed(&time, 1)];
                if gate.is_some_and(|next| time >= next) {
                    waiting
                        .entry(time)
                        .or_insert_with(|| (caps, Vec::new()))
                        .1
                        .append(data);
                } else {
                    me.apply(&ctx, &id, &geo, &caps, std::mem::take(data));
                }
            });

            // Then the next boundary's candidates are read, also in
            // slices, so that its close reads only the keys that got
            // weight since. Only in an activation that brought no input:
            // reading ahead costs more than reading at the close (a key
            // that gets weight after its read is read twice), so it is
            // worth doing in time that input leaves idle, not in time
            // that input is waiting.
            let reading = !evicting
                && if fed {
                    me.state.can_read_ahead()
                } else {
                    me.state.read_ahead(&geo, min_first, SLICE)
                };
            if evicting || reading {
                activator.activate();
            }

            if let Some(k) = ckpt.as_mut() {
                for epoch in k.clock().passed_frontier(frontier) {
                    for (_, (caps, data)) in take_below(&mut waiting, epoch) {
                        me.apply(&ctx, &id, &geo, &caps, data);
                    }
                    me.evaluate(
                        &geo,
                        min_first,
                        &predicate,
                        &mut rising_out,
                        &mut ticks_out,
                        |t| t < epoch,
                    );
                    me.state.evict_marked();
                    if let Err(e) = save_chain(k, &mut me.state, &mut chain, epoch) {
                        ctx.fail(e);
                        return;
                    }
                }
                let next = k
                    .clock()
                    .release_bound(frontier.frontier().first().copied());
                for (_, (caps, data)) in take_below(&mut waiting, next) {
                    me.apply(&ctx, &id, &geo, &caps, data);
                }
            }
            if me.future > 0 {
                tracing::warn!(
                    operator = %id,
                    "rejected {} pane weights 2^32 panes or more away from the live ones",
                    me.future
                );
                me.future = 0;
            }
            me.evaluate(
                &geo,
                min_first,
                &predicate,
                &mut rising_out,
                &mut ticks_out,
                |t| !frontier.less_than(&t),
            );
        }
    });
    Ok((rising, ticks))
}

/// Sums the per-worker tick counts of each boundary on worker 0 and emits
/// one [`RiseTick`] per boundary once the frontier has passed it.
pub(crate) fn gather_ticks<'scope>(
    local: EventStream<'scope, u64>,
    id: &str,
) -> EventStream<'scope, RiseTick> {
    local.unary_frontier(
        Exchange::new(|_: &(EventTime, u64)| 0),
        &format!("RiseTicks({id})"),
        |_, _| {
            let mut pending: BTreeMap<EventTime, (Capability<EventTime>, u64)> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    if cap.least().is_none() {
                        return;
                    }
                    for (t, n) in data.drain(..) {
                        pending
                            .entry(t)
                            .or_insert_with(|| (cap.delayed(&t, 0), 0))
                            .1 += n;
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let t = *entry.key();
                    let (cap, trending) = entry.remove();
                    output.session(&cap).give((t, RiseTick { t, trending }));
                }
            }
        },
    )
}
