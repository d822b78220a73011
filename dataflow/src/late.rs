//! Separating late records from on-time ones.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;

use crate::source::EventStream;

/// Splits off late records: those whose event time is below the timely time
/// they travel at (their partition's watermark had passed them when they
/// were read). Returns `(on_time, late)`; see [`crate::Events::split_late`].
pub(crate) fn split_late<'scope, D: 'static>(
    stream: EventStream<'scope, D>,
) -> (EventStream<'scope, D>, EventStream<'scope, D>) {
    let mut builder = OperatorBuilder::new("SplitLate".to_owned(), stream.scope());
    let mut input = builder.new_input(stream, Pipeline);
    let (on_time_out, on_time) = builder.new_output();
    let (late_out, late) = builder.new_output();
    let mut on_time_out = OutputBuilder::from(on_time_out);
    let mut late_out = OutputBuilder::from(late_out);
    builder.build(move |_| {
        move |_| {
            let mut on_time_out = on_time_out.activate();
            let mut late_out = late_out.activate();
            input.for_each_stamp(|cap, data| {
                let time = cap.least().copied().unwrap_or(0);
                let mut on_time = on_time_out.session(&cap);
                let mut late = late_out.session(&cap);
                for (ts, d) in data.flat_map(|d| d.drain(..)) {
                    if ts < time {
                        late.give((ts, d));
                    } else {
                        on_time.give((ts, d));
                    }
                }
            });
        }
    });
    (on_time, late)
}
