//! The timely operator behind [`super::KeyedProcess`]: exchange by key,
//! hold records until progress passes them, apply them with the timers,
//! checkpoint the state.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyflow_dataflow::checkpoint::{decode, encode, take_below};
use keyflow_dataflow::metrics::Metrics;
use keyflow_dataflow::run::Context;
use keyflow_dataflow::source::EventStream;
use keyflow_dataflow::stable_hash;
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::window::Lateness;
use keyflow_dataflow::Result;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;

use super::{ProcessFunction, ProcessState};

type State<F> = ProcessState<
    <F as ProcessFunction>::Key,
    <F as ProcessFunction>::In,
    <F as ProcessFunction>::State,
>;

/// Capabilities of one input message for (output, late).
type Caps = [Capability<EventTime>; 2];

/// The outputs and the late records not applied.
type Streams<'scope, F> = (
    EventStream<'scope, <F as ProcessFunction>::Out>,
    EventStream<'scope, (<F as ProcessFunction>::Key, <F as ProcessFunction>::In)>,
);

/// Input held back until the next epoch's snapshot, by message time.
type Waiting<K, V> = BTreeMap<EventTime, (Caps, Vec<(EventTime, (K, V))>)>;

/// Rebuilds this worker's share of a checkpointed state: the keys it owns
/// under the current number of workers, from every old worker's part.
fn restore<F: ProcessFunction>(
    parts: &[Vec<u8>],
    id: &str,
    peers: usize,
    index: usize,
) -> Result<State<F>> {
    let mut state = State::<F>::new();
    for part in parts {
        let mut old: State<F> = decode(part, id)?;
        old.retain_keys(|k| stable_hash(k) as usize % peers == index);
        old.rebuild_timers();
        state.absorb(old);
    }
    Ok(state)
}

/// The bound below which records and timers may be applied, given the
/// least time still possible on the input (`None`: the input is complete).
fn bound(low: Option<EventTime>, delay: u64) -> EventTime {
    match low {
        Some(t) => t.saturating_sub(delay),
        None => EventTime::MAX,
    }
}

/// What one worker's operator keeps between activations.
struct Worker<F: ProcessFunction> {
    f: F,
    state: State<F>,
    /// How far behind progress records and timers are applied: the allowed
    /// lateness, or 0.
    delay: u64,
    lateness: Lateness,
    /// A capability at most the next pending time plus `delay`, while
    /// anything is pending.
    hold: Option<Capability<EventTime>>,
    out: Vec<(EventTime, F::Out)>,
}

impl<F: ProcessFunction> Worker<F> {
    /// Takes the records of one message at `time`: keeps those it will
    /// apply and returns the late ones it does not (and how many it saw).
    #[allow(clippy::type_complexity)]
    fn take(
        &mut self,
        caps: &Caps,
        time: EventTime,
        data: Vec<(EventTime, (F::Key, F::In))>,
    ) -> (Vec<(EventTime, (F::Key, F::In))>, u64, u64) {
        let mut rejected = Vec::new();
        let (mut late, mut accepted) = (0, 0);
        for (ts, (key, value)) in data {
            if ts < time {
                late += 1;
            }
            if ts.saturating_add(self.delay) < time {
                rejected.push((ts, (key, value)));
            } else {
                accepted += 1;
                self.state.push(ts, key, value);
            }
        }
        if accepted > 0 && self.hold.as_ref().is_none_or(|h| *h.time() > time) {
            self.hold = Some(caps[0].clone());
        }
        (rejected, late, accepted)
    }

    /// Applies everything below `bound`; the outputs wait in `out` to go
    /// at the held time, which is at most theirs plus `delay`.
    fn advance(&mut self, bound: EventTime) {
        self.state.advance(&self.f, bound, &mut self.out);
    }

    /// Moves the held capability up to the next pending time, or drops it.
    fn settle(&mut self) {
        match self.state.next_time() {
            Some(t) => {
                let at = t.saturating_add(self.delay);
                if let Some(h) = self.hold.as_mut() {
                    if *h.time() < at {
                        h.downgrade(&at);
                    }
                }
            }
            None => self.hold = None,
        }
    }
}

/// Builds the operator: returns the outputs and the late records.
pub(crate) fn process_keyed<'scope, F: ProcessFunction>(
    events: EventStream<'scope, (F::Key, F::In)>,
    ctx: &Arc<Context>,
    id: &str,
    f: F,
    lateness: Lateness,
) -> Result<Streams<'scope, F>> {
    let scope = events.scope();
    let (peers, index) = (scope.peers(), scope.index());
    let mut ckpt = ctx.checkpoint_step(index, id, &format!("keyed process `{id}`"))?;
    let restored = match ckpt.as_ref() {
        Some(k) if k.restored_epoch().is_some() => {
            Some(restore::<F>(k.restored_parts(), id, peers, index)?)
        }
        _ => None,
    };
    let delay = match lateness {
        Lateness::Allowed(d) => d,
        Lateness::Drop | Lateness::SideOutput => 0,
    };
    let mut builder = OperatorBuilder::new(format!("KeyedProcess({id})"), scope);
    let route = |(_, (k, _)): &(EventTime, (F::Key, F::In))| stable_hash(k);
    let mut input = builder.new_input(events, Exchange::new(route));
    let (main_out, output) = builder.new_output();
    let (late_out, late) = builder.new_output();
    let mut main_out = OutputBuilder::from(main_out);
    let mut late_out = OutputBuilder::from(late_out);
    let ctx = Arc::clone(ctx);
    let counters = ctx.metrics.step(id);

    builder.build(move |initial| {
        let mut me = Worker {
            f,
            state: restored.unwrap_or_default(),
            delay,
            lateness,
            hold: None,
            out: Vec::new(),
        };
        // Records and timers restored wait for progress again.
        if let (Some(t), Some(cap)) = (me.state.next_time(), initial.first()) {
            me.hold = Some(cap.delayed(&t.saturating_add(delay)));
        }
        let mut waiting: Waiting<F::Key, F::In> = BTreeMap::new();
        move |frontiers| {
            let frontier = &frontiers[0];
            let mut main_out = main_out.activate();
            let mut late_out = late_out.activate();
            let gate = ckpt.as_mut().map(|k| k.clock().next());
            let mut take = |me: &mut Worker<F>, caps: Caps, time, data| {
                let (rejected, late, accepted) = me.take(&caps, time, data);
                let dropped = rejected.len() as u64;
                Metrics::add(&counters.records_in, accepted + dropped);
                Metrics::add(&counters.late, late);
                if me.lateness == Lateness::SideOutput {
                    Metrics::add(&ctx.metrics.late_side, dropped);
                    late_out
                        .session(&caps[1])
                        .give_iterator(rejected.into_iter());
                } else {
                    Metrics::add(&ctx.metrics.late_dropped, dropped);
                    Metrics::add(&counters.dropped, dropped);
                }
            };

            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                let caps = [cap.delayed(&time, 0), cap.delayed(&time, 1)];
                if gate.is_some_and(|next| time >= next) {
                    waiting
                        .entry(time)
                        .or_insert_with(|| (caps, Vec::new()))
                        .1
                        .append(data);
                } else {
                    take(&mut me, caps, time, std::mem::take(data));
                }
            });

            let mut emit = |me: &mut Worker<F>| {
                if !me.out.is_empty() {
                    Metrics::add(&counters.records_out, me.out.len() as u64);
                    if let Some(hold) = me.hold.as_ref() {
                        main_out.session(hold).give_iterator(me.out.drain(..));
                    } else {
                        debug_assert!(false, "outputs without a held capability");
                        me.out.clear();
                    }
                }
                me.settle();
            };

            if let Some(k) = ckpt.as_mut() {
                for epoch in k.clock().passed_frontier(frontier) {
                    for (time, (caps, data)) in take_below(&mut waiting, epoch) {
                        take(&mut me, caps, time, data);
                    }
                    me.advance(bound(Some(epoch), delay));
                    emit(&mut me);
                    if let Err(e) = encode(&me.state).and_then(|b| k.save(epoch, b)) {
                        ctx.fail(e);
                        return;
                    }
                }
                let next = k
                    .clock()
                    .release_bound(frontier.frontier().first().copied());
                for (time, (caps, data)) in take_below(&mut waiting, next) {
                    take(&mut me, caps, time, data);
                }
            }
            me.advance(bound(frontier.frontier().first().copied(), delay));
            emit(&mut me);
        }
    });
    Ok((output, late))
}
