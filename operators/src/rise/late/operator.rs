//! The keyed operator of rise detection under allowed lateness, with its
//! checkpoints, and the gathering of its ticks on worker 0.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use keyflow_dataflow::checkpoint::take_below;
use keyflow_dataflow::metrics::Metrics;
use keyflow_dataflow::run::Context;
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::Key;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder};
use timely::dataflow::operators::Capability;
use timely::progress::frontier::MutableAntichain;

use super::state::LateState;
use super::{LocalTick, Reason, Revision};
use crate::rise::chain::{read_chain, save_chain, Chain};
use crate::rise::pre::{PaneWeight, PartialStream};
use crate::rise::state::Geometry;
use crate::rise::RiseTick;

type Out<'a, D> = timely::dataflow::operators::generic::OutputBuilderSession<
    'a,
    EventTime,
    timely::container::CapacityContainerBuilder<Vec<(EventTime, D)>>,
>;

/// Capabilities for (revisions, ticks).
type Caps = [Capability<EventTime>; 2];

/// Input held back until the next epoch's snapshot, by message time.
type Waiting<K> = BTreeMap<EventTime, (Caps, Vec<(EventTime, PaneWeight<K>)>)>;

/// Late records `(key, pane, weight)` by the time they were read.
type LateStash<K> = BTreeMap<EventTime, (Caps, Vec<(K, u64, u64)>)>;

/// The least time of a frontier (time is totally ordered), `None` when empty.
fn least(frontier: &MutableAntichain<EventTime>) -> Option<EventTime> {
    frontier.frontier().iter().min().copied()
}

/// What the keyed operator keeps between activations.
struct Keyed<K> {
    state: LateState<K>,
    worker: usize,
    /// Capabilities at the next boundary to evaluate, while there is one.
    held: Option<Caps>,
    stash: LateStash<K>,
}

impl<K: Key> Keyed<K> {
    /// Holds the capabilities at the next boundary, if it moved earlier.
    /// `caps` are at or below it: new weight only opens boundaries above
    /// the time it travelled at.
    fn hold(&mut self, caps: &Caps) {
        if let Some(b) = self.state.next_boundary() {
            let t = b * self.state.geo.slide;
            if self.held.as_ref().is_none_or(|h| *h[0].time() > t) {
                self.held = Some([caps[0].delayed(&t), caps[1].delayed(&t)]);
            }
        }
    }

    /// Adds on-time weight, and stashes late records by their time.
    fn apply(&mut self, time: EventTime, caps: Caps, data: Vec<(EventTime, PaneWeight<K>)>) {
        let mut late = Vec::new();
        for (_, w) in data {
            if w.late {
                late.push((w.key, w.pane, w.weight));
            } else {
                self.state.add(w.key, w.pane, w.weight);
            }
        }
        self.hold(&caps);
        if !late.is_empty() {
            let entry = self.stash.entry(time).or_insert_with(|| (caps, Vec::new()));
            entry.1.append(&mut late);
        }
    }

    /// First-evaluates, in order, every pending boundary `t` for which
    /// `ready(t)`.
    fn evaluate<P: Fn(&[u64]) -> bool>(
        &mut self,
        pred: &P,
        revisions: &mut Out<'_, Revision<K>>,
        ticks: &mut Out<'_, LocalTick>,
        ready: impl Fn(EventTime) -> bool,
    ) {
        let slide = self.state.geo.slide;
        while let Some(b) = self.state.next_boundary() {
            let t = b * slide;
            if !ready(t) {
                break;
            }
            let Some(caps) = self.held.as_mut() else {
                panic!("rise lateness: boundary {t} is pending without a capability");
            };
            // The capabilities are at or below the next boundary, which
            // late weight may have moved past them.
            caps[0].downgrade(&t);
            caps[1].downgrade(&t);
            let passing = self.state.evaluate(b, pred);
            ticks
                .session(&caps[1])
                .give((t, Some(passing.len() as u64)));
            let revision = Revision {
                worker: self.worker,
                reason: Reason::First,
                passing: Some(passing),
            };
            revisions.session(&caps[0]).give((t, revision));
            match self.state.next_boundary() {
                Some(next) => {
                    if let Some(h) = self.held.as_mut() {
                        h[0].downgrade(&(next * slide));
                        h[1].downgrade(&(next * slide));
                    }
                }
                None => self.held = None,
            }
        }
    }

    /// Applies the stashed late batches whose time `ready` accepts, in time
    /// order, each after every boundary at or below its time has been
    /// evaluated, so the results do not depend on when messages arrive.
    fn settle<P: Fn(&[u64]) -> bool>(
        &mut self,
        ctx: &Context,
        pred: &P,
        revisions: &mut Out<'_, Revision<K>>,
        ticks: &mut Out<'_, LocalTick>,
        ready: impl Fn(EventTime) -> bool,
    ) {
        while let Some(entry) = self.stash.first_entry() {
            let t = *entry.key();
            if !ready(t) {
                break;
            }
            let (caps, records) = entry.remove();
            self.evaluate(pred, revisions, ticks, |at| at <= t);
            let outcome = self.state.apply_late(t, records, pred);
            Metrics::add(&ctx.metrics.late_dropped, outcome.dropped);
            let mut session = revisions.session(&caps[0]);
            for (b, passing) in outcome.updates {
                ticks.session(&caps[1]).give((b, None));
                let worker = self.worker;
                let reason = Reason::Update;
                session.give((
                    b,
                    Revision {
                        worker,
                        reason,
                        passing,
                    },
                ));
            }
            drop(session);
            // Late weight may open boundaries above `t`.
            self.hold(&caps);
        }
    }
}

/// Rebuilds this worker's share of a checkpointed state: the keys it owns
/// under the current number of workers, from every old worker's part.
fn restore<K: Key>(
    fresh: impl Fn() -> LateState<K>,
    parts: &[Vec<u8>],
    read_blob: impl Fn(&str) -> keyflow_dataflow::Result<Vec<u8>>,
    id: &str,
    epoch: EventTime,
    peers: usize,
    index: usize,
) -> keyflow_dataflow::Result<LateState<K>> {
    let keep = |h: u64| h as usize % peers == index;
    let mut merged = fresh().snapshot();
    for part in parts {
        let restore = |mut full: super::log::LateSnapshot<K>| {
            full.retain(keep);
            fresh().load(full)
        };
        let replay = |s: &mut LateState<K>, changes| s.replay(changes, keep);
        merged.absorb(read_chain(part, id, &read_blob, restore, replay)?.snapshot());
    }
    let state = fresh().load(merged);
    let mut state = state.map_err(|reason| keyflow_dataflow::Error::Checkpoint {
        path: format!("step {id}").into(),
        reason,
    })?;
    // Every boundary below the epoch had its first evaluation by the keys'
    // old owners; none of them may have another.
    let below = epoch.div_ceil(state.geo.slide).saturating_sub(1);
    state.consider(below);
    Ok(state)
}

/// The keyed operator: merges pane weights into [`LateState`], holds one
/// capability per output at the next boundary to evaluate, evaluates each
/// boundary once the frontier reaches it, and applies each batch of late
/// records once its time is complete. Returns this worker's revisions (see
/// [`Revision`]) and its local ticks.
///
/// With checkpoints, input at or after the next epoch boundary waits until
/// progress passes the boundary; the state is then written as of it: every
/// boundary and late batch below it applied, nothing at or after it, so no
/// late record is pending in a checkpoint. After a restore, the worker
/// first restates its passing set of every open boundary, at the epoch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn late_rise<'scope, K: Key, P>(
    partials: PartialStream<'scope, K>,
    ctx: &Arc<Context>,
    id: &str,
    geo: Geometry,
    lateness: u64,
    min_first: u64,
    predicate: P,
) -> keyflow_dataflow::Result<(
    EventStream<'scope, Revision<K>>,
    EventStream<'scope, LocalTick>,
)>
where
    P: Fn(&[u64]) -> bool + 'static,
{
    let scope = partials.scope();
    let (peers, index) = (scope.peers(), scope.index());
    let mut ckpt = ctx.checkpoint_step(index, id, &format!("rise `{id}`"))?;
    let fresh = || LateState::<K>::new(geo, lateness, min_first);
    let mut state = fresh();
    let mut restored = None;
    if let Some(k) = ckpt.as_ref() {
        if let Some(epoch) = k.restored_epoch() {
            let read = |name: &str| k.restored_blob(name);
            state = restore(fresh, k.restored_parts(), read, id, epoch, peers, index)?;
            restored = Some(epoch);
        }
    }
    let mut builder = OperatorBuilder::new(format!("RiseLate({id})"), scope);
    let route = |(_, w): &(EventTime, PaneWeight<K>)| w.hash;
    let mut input = builder.new_input(partials, Exchange::new(route));
    let (revisions_out, revisions) = builder.new_output();
    let (ticks_out, ticks) = builder.new_output();
    let mut revisions_out = OutputBuilder::from(revisions_out);
    let mut ticks_out = OutputBuilder::from(ticks_out);
    let ctx = Arc::clone(ctx);

    builder.build(move |initial| {
        let mut me = Keyed {
            state,
            worker: index,
            held: None,
            stash: BTreeMap::new(),
        };
        let mut restate = None;
        if let [revisions_cap, ticks_cap] = &initial[..] {
            let caps = [revisions_cap.clone(), ticks_cap.clone()];
            me.hold(&caps);
            restate = restored.map(|epoch| revisions_cap.delayed(&epoch));
        }
        let mut chain = Chain::default();
        let mut waiting: Waiting<K> = BTreeMap::new();
        move |frontiers| {
            let frontier = &frontiers[0];
            let mut revisions_out = revisions_out.activate();
            let mut ticks_out = ticks_out.activate();
            if let Some(cap) = restate.take() {
                let mut session = revisions_out.session(&cap);
                let open: Vec<u64> = me.state.open().collect();
                for b in open {
                    let revision = Revision {
                        worker: index,
                        reason: Reason::Restate,
                        passing: Some(me.state.passing_at(b)),
                    };
                    session.give((b * geo.slide, revision));
                }
            }
            let gate = ckpt.as_mut().map(|k| k.clock().next());

            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                let caps = [cap.delayed(&time, 0), cap.delayed(&time, 1)];
                if gate.is_some_and(|next| time >= next) {
                    let entry = waiting.entry(time).or_insert_with(|| (caps, Vec::new()));
                    entry.1.append(data);
                } else {
                    me.apply(time, caps, std::mem::take(data));
                }
            });

            let (revs, ticks) = (&mut revisions_out, &mut ticks_out);
            if let Some(k) = ckpt.as_mut() {
                for epoch in k.clock().passed_frontier(frontier) {
                    for (time, (caps, data)) in take_below(&mut waiting, epoch) {
                        me.apply(time, caps, data);
                    }
                    me.settle(&ctx, &predicate, revs, ticks, |t| t < epoch);
                    me.evaluate(&predicate, revs, ticks, |t| t < epoch);
                    if let Err(e) = save_chain(k, &mut me.state, &mut chain, epoch) {
                        ctx.fail(e);
                        return;
                    }
                }
                let next = k.clock().release_bound(least(frontier));
                for (time, (caps, data)) in take_below(&mut waiting, next) {
                    me.apply(time, caps, data);
                }
            }
            me.settle(&ctx, &predicate, revs, ticks, |t| !frontier.less_equal(&t));
            me.evaluate(&predicate, revs, ticks, |t| !frontier.less_than(&t));
            me.state.evict(least(frontier));
        }
    });
    Ok((revisions, ticks))
}

/// On worker 0: sums the local ticks of each first evaluation into one
/// [`RiseTick`] once the frontier has passed its boundary, and counts in
/// `late_updates` the boundaries re-evaluated at each later time.
pub(crate) fn gather_ticks<'scope>(
    local: EventStream<'scope, LocalTick>,
    ctx: &Arc<Context>,
    id: &str,
) -> EventStream<'scope, RiseTick> {
    let ctx = Arc::clone(ctx);
    local.unary_frontier(
        Exchange::new(|_: &(EventTime, LocalTick)| 0),
        &format!("RiseTicks({id})"),
        |_, _| {
            type Pending =
                BTreeMap<EventTime, (Capability<EventTime>, Vec<(EventTime, LocalTick)>)>;
            let mut pending: Pending = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let entry = (pending.entry(time))
                        .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()));
                    entry.1.append(data);
                });
                while let Some(entry) = pending.first_entry() {
                    let at = *entry.key();
                    if frontier.less_equal(&at) {
                        break;
                    }
                    let (cap, ticks) = entry.remove();
                    let mut firsts: BTreeMap<EventTime, u64> = BTreeMap::new();
                    let mut updated = BTreeSet::new();
                    for (t, tick) in ticks {
                        match tick {
                            Some(passed) => *firsts.entry(t).or_default() += passed,
                            None if at > t => {
                                updated.insert(t);
                            }
                            None => {}
                        }
                    }
                    Metrics::add(&ctx.metrics.late_updates, updated.len() as u64);
                    let mut session = output.session(&cap);
                    for (t, trending) in firsts {
                        session.give((t, RiseTick { t, trending }));
                    }
                }
            }
        },
    )
}
