//! `explain`: the graph of a dataflow as timely builds it, as steps and
//! channels ([`JobGraph`]), in text, DOT or Mermaid.
//!
//! The graph comes from timely's own logging of the operators and channels
//! it builds, so raw timely operators mixed into a job appear too. keyflow
//! names every operator of a step `Kind(step-id)`; the operators of one step
//! form one node, and operators of no step keep their names (`Map`,
//! `Filter`, numbered when repeated).

mod graph;
mod render;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use timely::logging::{TimelyEvent, TimelyEventBuilder};
use timely::worker::Worker;

use crate::error::Result;
use crate::flow::Dataflow;
use crate::run::{run_workers, RunConfig};

pub use graph::{GraphEdge, GraphNode, JobGraph};

/// Records the operators and channels a worker builds, from when it is
/// started until [`GraphLog::finish`].
///
/// timely hands its logger to every operator built while it is registered,
/// and they keep logging (schedules, messages) for as long as they run; the
/// recorder keeps only the events that describe the graph, so a running
/// job's memory does not grow with them.
pub struct GraphLog {
    events: Rc<RefCell<Vec<TimelyEvent>>>,
}

impl GraphLog {
    /// Starts recording on `worker`; call before it builds the dataflow.
    pub fn start(worker: &mut Worker) -> GraphLog {
        let events: Rc<RefCell<Vec<TimelyEvent>>> = Rc::default();
        let sink = Rc::clone(&events);
        if let Some(mut register) = worker.log_register() {
            register.insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
                let Some(data) = data else { return };
                let graph = data.iter().filter(|(_, e)| {
                    matches!(e, TimelyEvent::Operates(_) | TimelyEvent::Channels(_))
                });
                sink.borrow_mut().extend(graph.map(|(_, e)| e.clone()));
            });
        }
        GraphLog { events }
    }

    /// Stops recording (for dataflows built later) and returns the graph of
    /// what was built since [`GraphLog::start`], whose step ids are `steps`.
    pub fn finish(self, worker: &mut Worker, steps: &[String]) -> JobGraph {
        if let Some(mut register) = worker.log_register() {
            register.remove("timely");
        }
        let events = self.events.borrow();
        JobGraph::from_events(&events, steps)
    }
}

/// Builds a dataflow with `build` on one worker, without running it, and
/// returns its graph.
pub fn explain_graph<F>(build: F) -> Result<JobGraph>
where
    F: for<'s> Fn(&Dataflow<'s>) -> Result<()> + Send + Sync + 'static,
{
    let graph = Arc::new(Mutex::new(JobGraph::default()));
    let out = Arc::clone(&graph);
    run_workers(&RunConfig::threads(1), move |worker, ctx| {
        let log = GraphLog::start(worker);
        let steps = worker.dataflow(|scope| {
            let flow = Dataflow::new(scope, ctx);
            build(&flow)?;
            flow.finish()?;
            Ok::<_, crate::Error>(flow.step_ids())
        })?;
        // Dropping the dataflows flushes timely's logger.
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
        *out.lock().unwrap_or_else(|p| p.into_inner()) = log.finish(worker, &steps);
        Ok(())
    })?;
    let graph = graph.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(graph)
}

/// Builds a dataflow with `build` on one worker, without running it, and
/// describes its steps and channels, one line each ([`JobGraph::text`]).
///
/// # Examples
/// ```
/// use keyflow_dataflow::explain::explain;
/// use keyflow_dataflow::prelude::*;
///
/// let text = explain(|flow| {
///     let input = IterSource::new("numbers", 1, |_| (0..3u64).map(|i| (i, i)));
///     let _ = flow
///         .source("numbers", input, &SourceConfig::default())?
///         .key_by(|i| (i % 2, i))
///         .window(WindowSpec::tumbling(SECOND)?)
///         .count("counts");
///     Ok(())
/// })
/// .unwrap();
/// assert!(text.contains("Source(numbers)"));
/// assert!(text.contains("Window(counts)"));
/// assert!(text.contains("numbers -> KeyBy"));
/// ```
pub fn explain<F>(build: F) -> Result<String>
where
    F: for<'s> Fn(&Dataflow<'s>) -> Result<()> + Send + Sync + 'static,
{
    Ok(explain_graph(build)?.text())
}
