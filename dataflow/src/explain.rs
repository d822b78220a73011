//! `explain`: the operator graph of a dataflow, as timely builds it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::flow::Dataflow;
use crate::run::{run_workers, RunConfig};
use timely::logging::{TimelyEvent, TimelyEventBuilder};

/// Builds a dataflow with `build` on one worker, without running it, and
/// describes its operators and channels, one line each.
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
/// ```
pub fn explain<F>(build: F) -> Result<String>
where
    F: for<'s> Fn(&Dataflow<'s>) -> Result<()> + Send + Sync + 'static,
{
    let text = Arc::new(Mutex::new(String::new()));
    let out = Arc::clone(&text);
    run_workers(&RunConfig::threads(1), move |worker, ctx| {
        let events: Rc<RefCell<Vec<TimelyEvent>>> = Rc::default();
        let sink = Rc::clone(&events);
        if let Some(mut register) = worker.log_register() {
            register.insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
                if let Some(data) = data {
                    sink.borrow_mut()
                        .extend(data.iter().map(|(_, e)| e.clone()));
                }
            });
        }
        worker.dataflow(|scope| {
            let flow = Dataflow::new(scope, ctx);
            build(&flow)?;
            flow.finish()
        })?;
        if let Some(mut register) = worker.log_register() {
            register.remove("timely");
        }
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
        *out.lock().unwrap_or_else(|p| p.into_inner()) = render(&events.borrow());
        Ok(())
    })?;
    let text = text.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(text)
}

fn render(events: &[TimelyEvent]) -> String {
    // Operators by address; channels connect operator indexes inside a scope.
    let mut names: BTreeMap<Vec<usize>, String> = BTreeMap::new();
    let mut edges = Vec::new();
    for event in events {
        match event {
            TimelyEvent::Operates(op) => {
                names.insert(op.addr.clone(), op.name.clone());
            }
            TimelyEvent::Channels(ch) => edges.push(ch.clone()),
            _ => {}
        }
    }
    let name_of = |scope: &[usize], index: usize| {
        let mut addr = scope.to_vec();
        addr.push(index);
        names
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| format!("scope{addr:?}"))
    };
    let mut out = String::from("operators:\n");
    for (addr, name) in &names {
        if addr.len() > 1 {
            out.push_str(&format!("  {:<12} {name}\n", format!("{addr:?}")));
        }
    }
    out.push_str("channels:\n");
    for ch in edges {
        // Index 0 of a scope is the scope's own boundary.
        if ch.source.0 == 0 || ch.target.0 == 0 {
            continue;
        }
        out.push_str(&format!(
            "  {} -> {}\n",
            name_of(&ch.scope_addr, ch.source.0),
            name_of(&ch.scope_addr, ch.target.0)
        ));
    }
    out
}
