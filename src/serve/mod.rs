//! `--serve ADDR`: a live dashboard of a running job, its Prometheus
//! metrics and its job graph, over HTTP.
//!
//! A job opts in with a few lines: flatten [`ServeArgs`] into its flags,
//! start a [`Dashboard`] on its context before the run, hand the dashboard
//! its output streams while building ([`Dashboard::trending`],
//! [`Dashboard::anomaly`]), and call [`Dashboard::serve_on`] when the run
//! ends, which keeps serving the final state until Ctrl-C or SIGTERM.
//!
//! The page (`/`) is rendered on the server with the current data on each
//! request, so a browser that runs no script still sees it; its script then
//! asks `/api/view` for the changed parts every second.

mod http;
mod layout;
mod render;
mod state;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;

use clap::Args;
use keyflow::dataflow::prelude::*;
use keyflow::jobs::anomaly::AnomalyHour;
use keyflow::jobs::trending::TrendingMinute;

pub use state::Shared;

/// The `--serve` flag of `keyflow run JOB`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Serve a live dashboard (`/`), Prometheus metrics (`/metrics`) and
    /// JSON (`/api/trending`, `/api/anomaly`, `/api/health`, `/api/graph`)
    /// at ADDR, such as 127.0.0.1:8080 (port 0 picks a free port). With a
    /// bounded input the server stays up after the input ends, showing the
    /// final state, until Ctrl-C or SIGTERM. In a cluster, process 0
    /// serves.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
}

impl ServeArgs {
    /// The address to serve at, checked.
    fn address(&self) -> anyhow::Result<Option<SocketAddr>> {
        let Some(text) = &self.serve else {
            return Ok(None);
        };
        let mut addrs = text.to_socket_addrs().map_err(|e| {
            anyhow::anyhow!("--serve {text}: not a host:port address (such as 127.0.0.1:8080): {e}")
        })?;
        match addrs.next() {
            Some(addr) => Ok(Some(addr)),
            None => anyhow::bail!("--serve {text}: the host has no address"),
        }
    }
}

/// A job's dashboard: does nothing without `--serve`, and in a cluster's
/// processes other than process 0 (which hold no output).
#[derive(Clone, Default)]
pub struct Dashboard {
    shared: Option<Arc<Shared>>,
    address: Option<SocketAddr>,
}

impl Dashboard {
    /// Starts serving the dashboard of job `job`, run with `ctx`, when
    /// `args` asks for it: binds the address now, so that a taken port
    /// fails the run before any work, and asks the run to record its graph.
    pub fn start(args: &ServeArgs, job: &str, ctx: &Arc<Context>) -> anyhow::Result<Dashboard> {
        let Some(addr) = args.address()? else {
            return Ok(Dashboard::default());
        };
        let shared = Arc::new(Shared::new(job, ctx));
        if ctx.config.process != 0 {
            // The sinks still join the dataflow (every process builds the
            // same one); only process 0 gets their records.
            return Ok(Dashboard {
                shared: Some(shared),
                address: None,
            });
        }
        let text = args.serve.as_deref().unwrap_or_default();
        let listener = TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("--serve {text}: cannot listen there: {e}"))?;
        let address = listener.local_addr()?;
        ctx.record_graph();
        http::spawn(listener, Arc::clone(&shared))?;
        let sampler = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("keyflow-serve-rate".into())
            .spawn(move || {
                while let Some(shared) = sampler.upgrade() {
                    shared.sample();
                    drop(shared);
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            })?;
        // Not eprintln!, which panics when stderr is a pipe whose reader is
        // gone.
        let _ = writeln!(std::io::stderr(), "keyflow: dashboard at http://{address}/");
        Ok(Dashboard {
            shared: Some(shared),
            address: Some(address),
        })
    }

    /// Shows the trending minutes of `minutes` on the page and in
    /// `/api/trending` (a sink with step id `dashboard-trending`).
    #[track_caller]
    pub fn trending(&self, minutes: &Events<'_, TrendingMinute>) -> Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        shared.show_trending();
        let shared = Arc::clone(shared);
        minutes
            .clone()
            .sink("dashboard-trending", move || Ok(Panel(shared)))
    }

    /// Shows the scored hours of `hours` on the page and in `/api/anomaly`
    /// (a sink with step id `dashboard-anomaly`).
    #[track_caller]
    pub fn anomaly(&self, hours: &Events<'_, AnomalyHour>) -> Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        shared.show_anomaly();
        let shared = Arc::clone(shared);
        hours
            .clone()
            .sink("dashboard-anomaly", move || Ok(Panel(shared)))
    }

    /// After the run: when serving, says so and keeps serving the final
    /// state until a signal ends the process (the signal handler exits
    /// with 128 + the signal: 130 for Ctrl-C, 143 for SIGTERM); otherwise
    /// returns at once.
    pub fn serve_on(&self) {
        let (Some(shared), Some(address)) = (&self.shared, self.address) else {
            return;
        };
        shared.finish();
        let _ = writeln!(
            std::io::stderr(),
            "keyflow: the input has ended; serving the final state at http://{address}/ until \
             Ctrl-C or SIGTERM"
        );
        loop {
            std::thread::park();
        }
    }
}

/// The sink that hands a job's output to the dashboard.
struct Panel(Arc<Shared>);

impl Sink<TrendingMinute> for Panel {
    fn write(&mut self, _time: EventTime, records: &[(EventTime, TrendingMinute)]) -> Result<()> {
        self.0.take_minutes(records);
        Ok(())
    }
}

impl Sink<AnomalyHour> for Panel {
    fn write(&mut self, _time: EventTime, records: &[(EventTime, AnomalyHour)]) -> Result<()> {
        self.0.take_hours(records);
        Ok(())
    }
}
