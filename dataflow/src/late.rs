//! Separating late records from on-time ones.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;

use crate::source::EventStream;

/// Extension trait that splits off late records: those whose event time is
/// below the timely time they travel at (their partition's watermark had
/// passed them when they were read).
pub trait SplitLate<'scope, D> {
    /// Returns `(on_time, late)`.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::late::SplitLate;
    /// use keyflow_dataflow::testing::{capture, Captured};
    ///
    /// let (on_time, late) = (Captured::new(), Captured::new());
    /// let (o, l) = (on_time.clone(), late.clone());
    /// run(&RunConfig::threads(1), move |worker, ctx| {
    ///     let (o, l) = (o.clone(), l.clone());
    ///     worker.dataflow(|scope| {
    ///         // With 1 s of allowed out-of-orderness, 3_000 arrives after
    ///         // 5_000 has moved the watermark to 4_000: it is late.
    ///         let input = IterSource::new("t", 1, |_| vec![(5_000, 'a'), (3_000, 'b'), (4_500, 'c')].into_iter());
    ///         let config = SourceConfig { max_out_of_orderness: 1_000, ..SourceConfig::default() };
    ///         let (ok, bad) = source(scope, ctx, input, &config)?.split_late();
    ///         capture(ok, &o);
    ///         capture(bad, &l);
    ///         Ok(())
    ///     })
    /// })
    /// .unwrap();
    /// assert_eq!(on_time.sorted(), vec![(4_500, 'c'), (5_000, 'a')]);
    /// assert_eq!(late.sorted(), vec![(3_000, 'b')]);
    /// ```
    fn split_late(self) -> (EventStream<'scope, D>, EventStream<'scope, D>);
}

impl<'scope, D: 'static> SplitLate<'scope, D> for EventStream<'scope, D> {
    fn split_late(self) -> (EventStream<'scope, D>, EventStream<'scope, D>) {
        let mut builder = OperatorBuilder::new("SplitLate".to_owned(), self.scope());
        let mut input = builder.new_input(self, Pipeline);
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
}
