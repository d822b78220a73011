//! Session windows: one window per burst of a key's activity.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

use super::aggregate::result_of;
use super::pre::PartialStream;
use super::{Aggregator, Data, Key, LateStash, Lateness, Partial, ResultOutput, WindowResult};
use crate::checkpoint::take_below;
use crate::error::{Error, Result};
use crate::hash::{stable_hash, StableMap};
use crate::metrics::{Metrics, StepMetrics};
use crate::run::Context;
use crate::source::EventStream;
use crate::time::EventTime;

/// One session of one key: records from `start` to `last`; the window is
/// `[start, last + gap)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session<A> {
    /// First record's event time.
    pub start: EventTime,
    /// Last record's event time.
    pub last: EventTime,
    /// The aggregate so far.
    pub acc: A,
    /// Whether its result was emitted (kept only under allowed lateness).
    pub fired: bool,
}

/// The state of one session-window operator on one worker: serializable, so
/// a checkpoint can store it under the operator's id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "K: Key, A: Data")]
pub struct SessionState<K, A> {
    /// Each key's sessions: those not yet emitted and, under allowed
    /// lateness, emitted ones that a late record may still update.
    pub sessions: StableMap<K, Vec<Session<A>>>,
}

impl<K, A> Default for SessionState<K, A> {
    fn default() -> Self {
        SessionState {
            sessions: StableMap::default(),
        }
    }
}

/// Merges the piece `[start, last]` into `sessions`, joining every session it
/// overlaps; returns the index of the merged session and whether it absorbed
/// one that had fired.
fn merge_piece<V, G: Aggregator<V>>(
    sessions: &mut Vec<Session<G::Acc>>,
    agg: &G,
    gap: u64,
    mut piece: Session<G::Acc>,
) -> (usize, bool) {
    let mut absorbed_fired = false;
    let mut i = 0;
    while i < sessions.len() {
        let s = &sessions[i];
        if s.start < piece.last + gap && piece.start < s.last + gap {
            let s = sessions.swap_remove(i);
            absorbed_fired |= s.fired;
            piece.start = piece.start.min(s.start);
            piece.last = piece.last.max(s.last);
            agg.merge(&mut piece.acc, &s.acc);
        } else {
            i += 1;
        }
    }
    sessions.push(piece);
    (sessions.len() - 1, absorbed_fired)
}

type Timers<K> = BTreeMap<EventTime, (Capability<EventTime>, Vec<K>)>;

/// Emits every session whose end is a timer at or below `upto`. Without
/// allowed lateness a fired session is forgotten at once.
#[allow(clippy::too_many_arguments)]
fn fire<V, K: Key, G: Aggregator<V>>(
    upto: impl Fn(EventTime) -> bool,
    sessions: &mut StableMap<K, Vec<Session<G::Acc>>>,
    timers: &mut Timers<K>,
    gap: u64,
    keep: u64,
    (agg, refused): (&G, &mut Option<Error>),
    output: &mut ResultOutput<'_, K, G::Output>,
) {
    while let Some(entry) = timers.first_entry() {
        let end = *entry.key();
        if !upto(end) {
            break;
        }
        let (cap, keys) = entry.remove();
        let mut session = output.session(&cap);
        for key in keys {
            let Some(list) = sessions.get_mut(&key) else {
                continue;
            };
            for s in list.iter_mut().filter(|s| !s.fired && s.last + gap == end) {
                s.fired = true;
                let Some(value) = result_of(agg, &s.acc, (&key, s.start, end), refused) else {
                    continue;
                };
                session.give((
                    end,
                    WindowResult {
                        key: key.clone(),
                        start: s.start,
                        end,
                        value,
                        update: false,
                    },
                ));
            }
            if keep == 0 {
                list.retain(|s| !s.fired);
                if list.is_empty() {
                    sessions.remove(&key);
                }
            }
        }
    }
}

/// What one session-window operator keeps between activations.
struct Sessions<K, V, A> {
    state: SessionState<K, A>,
    /// Window ends to look at, with the keys that may have a session ending
    /// there (stale entries are skipped when they fire).
    timers: Timers<K>,
    late: LateStash<K, V>,
    /// Why a session's result was refused (see [`Aggregator::check`]): the
    /// step fails with it.
    refused: Option<Error>,
}

impl<K: Key, V: Data, A: Data> Sessions<K, V, A> {
    /// Merges partials that travelled at `time` (`cap` is at `time`).
    fn apply<G: Aggregator<V, Acc = A>>(
        &mut self,
        agg: &G,
        gap: u64,
        cap: &Capability<EventTime>,
        time: EventTime,
        data: Vec<(EventTime, Partial<K, V, A>)>,
    ) {
        for (_, partial) in data {
            match partial {
                Partial::Agg {
                    key,
                    start,
                    last,
                    acc,
                } => {
                    let list = self.state.sessions.entry(key.clone()).or_default();
                    let piece = Session {
                        start,
                        last,
                        acc,
                        fired: false,
                    };
                    let (i, _) = merge_piece(list, agg, gap, piece);
                    let end = list[i].last + gap;
                    self.timers
                        .entry(end)
                        .or_insert_with(|| (cap.delayed(&end), Vec::new()))
                        .1
                        .push(key);
                }
                Partial::Late { ts, key, value } => {
                    self.late.stash(cap, time, (ts, key, value));
                }
            }
        }
    }

    /// Applies the late records read at `t`, after every session ending at
    /// or before `t` has fired. The records are taken in (key, event time)
    /// order and each session they update is emitted once, with all of
    /// them: the results do not depend on the order the records arrived in.
    #[allow(clippy::too_many_arguments)]
    fn apply_late<G: Aggregator<V, Acc = A>>(
        &mut self,
        (ctx, counters): (&Context, &StepMetrics),
        agg: &G,
        gap: u64,
        keep: u64,
        t: EventTime,
        cap: Capability<EventTime>,
        mut records: Vec<(EventTime, K, V)>,
        output: &mut ResultOutput<'_, K, G::Output>,
    ) {
        fire(
            |end| end <= t,
            &mut self.state.sessions,
            &mut self.timers,
            gap,
            keep,
            (agg, &mut self.refused),
            output,
        );
        records.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
        let mut dropped = 0;
        // Where accepted records fell, to find their sessions once the whole
        // batch is merged.
        let mut touched: BTreeMap<K, Vec<EventTime>> = BTreeMap::new();
        for (ts, key, value) in records {
            let list = self.state.sessions.entry(key.clone()).or_default();
            // A fired session past its allowed lateness takes no more
            // records, whether or not the clean-up on progress has removed
            // it yet: that keeps the results independent of scheduling and
            // of where a restore resumed.
            list.retain(|s| !s.fired || s.last + gap + keep > t);
            let mut acc = agg.init();
            agg.add(&mut acc, value);
            let piece = Session {
                start: ts,
                last: ts,
                acc,
                fired: false,
            };
            let (i, absorbed_fired) = merge_piece(list, agg, gap, piece);
            let end = list[i].last + gap;
            if end > t {
                // Still open: it fires at its end (also when it swallowed an
                // emitted session).
                self.timers
                    .entry(end)
                    .or_insert_with(|| (cap.delayed(&end), Vec::new()))
                    .1
                    .push(key);
            } else if end + keep > t {
                list[i].fired = true;
                touched.entry(key).or_default().push(ts);
            } else {
                // Every session it could have joined was fired and expired
                // (removed above) or open (and then `end > t`): it is alone.
                debug_assert!(
                    !absorbed_fired,
                    "a late record at {ts} read at {t} merged into an expired session"
                );
                dropped += 1;
                list.swap_remove(i);
                if list.is_empty() {
                    self.state.sessions.remove(&key);
                }
            }
        }
        let mut updates = 0;
        let mut session = output.session(&cap);
        for (key, points) in touched {
            let Some(list) = self.state.sessions.get(&key) else {
                continue;
            };
            let hit: BTreeSet<usize> = points
                .iter()
                .filter_map(|ts| list.iter().position(|s| s.start <= *ts && *ts <= s.last))
                .filter(|i| list[*i].fired)
                .collect();
            for s in hit.into_iter().map(|i| &list[i]) {
                let end = s.last + gap;
                let place = (&key, s.start, end);
                let Some(value) = result_of(agg, &s.acc, place, &mut self.refused) else {
                    continue;
                };
                updates += 1;
                session.give((
                    end,
                    WindowResult {
                        key: key.clone(),
                        start: s.start,
                        end,
                        value,
                        update: true,
                    },
                ));
            }
        }
        Metrics::add(&ctx.metrics.late_dropped, dropped);
        Metrics::add(&counters.dropped, dropped);
        Metrics::add(&ctx.metrics.late_updates, updates);
    }

    /// Emits every session whose end is at or below `upto`.
    fn fire<G: Aggregator<V, Acc = A>>(
        &mut self,
        upto: impl Fn(EventTime) -> bool,
        gap: u64,
        keep: u64,
        agg: &G,
        output: &mut ResultOutput<'_, K, G::Output>,
    ) {
        fire(
            upto,
            &mut self.state.sessions,
            &mut self.timers,
            gap,
            keep,
            (agg, &mut self.refused),
            output,
        );
    }
}

/// Rebuilds this worker's share of checkpointed session state: the keys it
/// owns under the current number of workers, from every old worker's part.
fn restore<K: Key, A: Data>(
    parts: &[Vec<u8>],
    id: &str,
    peers: usize,
    index: usize,
) -> Result<SessionState<K, A>> {
    let mut state = SessionState::default();
    for part in parts {
        let old: SessionState<K, A> = crate::checkpoint::decode(part, id)?;
        let mine = old
            .sessions
            .into_iter()
            .filter(|(k, _)| stable_hash(k) as usize % peers == index);
        state.sessions.extend(mine);
    }
    Ok(state)
}

/// The keyed, stateful half of a session aggregation.
///
/// With checkpoints, partials at or after the next epoch boundary wait
/// until progress passes it; the state is then written as of the boundary
/// (sessions ending below it fired, late records read below it applied,
/// nothing that travelled at or after it applied).
pub(crate) fn session_windows<'scope, K: Key, V: Data, A: Aggregator<V>>(
    partials: PartialStream<'scope, K, V, A::Acc>,
    ctx: &Arc<Context>,
    id: &str,
    gap: u64,
    lateness: Lateness,
    agg: A,
) -> Result<EventStream<'scope, WindowResult<K, A::Output>>> {
    let keep = match lateness {
        Lateness::Allowed(ms) => ms,
        _ => 0,
    };
    let scope = partials.scope();
    let (peers, index) = (scope.peers(), scope.index());
    let mut ckpt = ctx.checkpoint_step(index, id, &format!("session window `{id}`"))?;
    let restored = match ckpt.as_ref() {
        Some(k) if k.restored_epoch().is_some() => Some((
            k.restored_epoch().unwrap_or(0),
            restore::<K, A::Acc>(k.restored_parts(), id, peers, index)?,
        )),
        _ => None,
    };
    let ctx = Arc::clone(ctx);
    let counters = ctx.metrics.step(id);
    let step = id.to_string();
    let route = |(_, p): &(EventTime, Partial<K, V, A::Acc>)| stable_hash(p.key());
    Ok(partials.unary_frontier(
        Exchange::new(route),
        &format!("Session({id})"),
        move |initial, _| {
            let mut me = Sessions {
                state: SessionState::<K, A::Acc>::default(),
                timers: BTreeMap::new(),
                late: LateStash::new(),
                refused: None,
            };
            if let Some((epoch, state)) = restored {
                // Sessions ending below the epoch fired before it was taken;
                // the others wait for their end again.
                for (key, list) in &state.sessions {
                    for s in list.iter().filter(|s| !s.fired && s.last + gap >= epoch) {
                        let end = s.last + gap;
                        me.timers
                            .entry(end)
                            .or_insert_with(|| (initial.delayed(&end), Vec::new()))
                            .1
                            .push(key.clone());
                    }
                }
                me.state = state;
            }
            let mut waiting: BTreeMap<EventTime, (Capability<EventTime>, Vec<_>)> = BTreeMap::new();
            let mut seen_frontier = Some(0);
            move |(input, frontier), output| {
                let gate = ckpt.as_mut().map(|k| k.clock().next());
                input.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let cap = cap.delayed(&time, 0);
                    if gate.is_some_and(|next| time >= next) {
                        waiting
                            .entry(time)
                            .or_insert_with(|| (cap, Vec::new()))
                            .1
                            .append(data);
                    } else {
                        me.apply(&agg, gap, &cap, time, std::mem::take(data));
                    }
                });

                if let Some(k) = ckpt.as_mut() {
                    for epoch in k.clock().passed_frontier(frontier) {
                        for (time, (cap, data)) in take_below(&mut waiting, epoch) {
                            me.apply(&agg, gap, &cap, time, data);
                        }
                        while let Some((t, (cap, records))) = me.late.next_below(epoch) {
                            me.apply_late(
                                (&ctx, &counters),
                                &agg,
                                gap,
                                keep,
                                t,
                                cap,
                                records,
                                output,
                            );
                        }
                        me.fire(|end| end < epoch, gap, keep, &agg, output);
                        if let Some(e) = me.refused.take() {
                            ctx.fail(e.in_step(&step));
                            return;
                        }
                        // A late record read at or after the epoch cannot
                        // reach a fired session that expired by then.
                        me.state.sessions.retain(|_, list| {
                            list.retain(|s| !s.fired || s.last + gap + keep > epoch);
                            !list.is_empty()
                        });
                        let saved =
                            crate::checkpoint::encode(&me.state).and_then(|b| k.save(epoch, b));
                        if let Err(e) = saved {
                            ctx.fail(e);
                            return;
                        }
                    }
                    let next = k
                        .clock()
                        .release_bound(frontier.frontier().first().copied());
                    for (time, (cap, data)) in take_below(&mut waiting, next) {
                        me.apply(&agg, gap, &cap, time, data);
                    }
                }

                while let Some((t, (cap, records))) = me.late.next_complete(frontier) {
                    me.apply_late((&ctx, &counters), &agg, gap, keep, t, cap, records, output);
                }

                me.fire(|end| !frontier.less_than(&end), gap, keep, &agg, output);
                if let Some(e) = me.refused.take() {
                    ctx.fail(e.in_step(&step));
                    return;
                }

                // Under allowed lateness, forget fired sessions once no late
                // record can reach them (checked when progress moves).
                let now = frontier.frontier().first().copied();
                if keep > 0 && now != seen_frontier {
                    seen_frontier = now;
                    me.state.sessions.retain(|_, list| {
                        list.retain(|s| !s.fired || frontier.less_than(&(s.last + gap + keep)));
                        !list.is_empty()
                    });
                }
            }
        },
    ))
}
