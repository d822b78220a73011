//! How the processes of a cluster find each other before timely starts.
//!
//! timely can connect its processes itself, but it trusts whatever connects
//! to its port: random bytes make it panic, any client can claim to be a
//! process, and it waits forever for a peer that never comes. keyflow
//! therefore forms the mesh itself and hands timely only connections that
//! passed a handshake:
//! - process `j` dials every process `i < j` twice, once for timely's data
//!   and once for keyflow's control link; process `i` accepts them;
//! - every connection starts with a handshake (see the `greet` module) that bounds
//!   what it reads (frames of at most 64 KiB) and how long it waits, checks
//!   an HMAC over fresh nonces under the cluster secret (empty when none is
//!   given, which keeps out strangers that do not speak the protocol but not
//!   an attacker who does), and compares every setting that changes results,
//!   naming the first difference;
//! - once a process holds all its connections it tells process 0 on its
//!   control link, and process 0 answers `go` when everyone has, or `abort`
//!   naming who failed, so no process starts a cluster that cannot run;
//! - afterwards the control links carry heartbeats ([`watch`]).
//!
//! Each process listens on its own host file address only while the mesh
//! forms, and resolves host names again on every attempt, because pods start
//! in any order and their DNS names appear late.

mod barrier;
mod frame;
mod greet;
mod hello;
mod links;
pub mod watch;

use std::net::TcpStream;
use std::time::Duration;

pub use hello::Channel;
pub use watch::{Reports, Watch};

use crate::error::{Error, Result};

/// What the mesh needs to know about this process and its cluster.
#[derive(Debug, Clone, Copy)]
pub struct Mesh<'a> {
    /// This process's index.
    pub process: usize,
    /// Number of processes.
    pub processes: usize,
    /// Worker threads per process.
    pub workers: usize,
    /// `host:port` of every process, in process order.
    pub hosts: &'a [String],
    /// How long forming the mesh may take in all.
    pub connect_timeout: Duration,
    /// Settings every process must share, as `(flag, value)`.
    pub settings: &'a [(String, String)],
    /// The cluster secret (empty for none).
    pub secret: &'a [u8],
}

/// Setting values longer than this many bytes are compared by digest.
const LONG_SETTING: usize = 256;

impl Mesh<'_> {
    /// The layout, the split size, then the job's own settings: what the
    /// hellos compare. A long value (a thousand input paths, say) goes as
    /// its length and digest, so that every hello fits in a frame.
    fn agreed(&self) -> Vec<(String, String)> {
        let mut all = vec![
            ("--processes".to_string(), self.processes.to_string()),
            ("--workers".to_string(), self.workers.to_string()),
            ("host list".to_string(), self.hosts.join(",")),
            // Processes that split files differently would read some lines
            // twice and others never.
            (
                crate::source::SPLIT_BYTES_ENV.to_string(),
                crate::source::split_bytes().to_string(),
            ),
        ];
        all.extend(self.settings.iter().map(|(flag, value)| {
            let value = if value.len() > LONG_SETTING {
                format!(
                    "{} bytes with digest {:016x}",
                    value.len(),
                    crate::stable_hash(value.as_str())
                )
            } else {
                value.clone()
            };
            (flag.clone(), value)
        }));
        all
    }
}

/// The connections of a formed mesh, indexed by process (`None` at this
/// process's own index).
#[derive(Debug)]
pub struct Links {
    /// One per peer, for timely.
    pub data: Vec<Option<TcpStream>>,
    /// One per peer, for heartbeats.
    pub control: Vec<Option<TcpStream>>,
}

/// Forms the mesh: returns once this process is connected to every other
/// and every process has said it is, or fails naming what went wrong.
pub fn form(mesh: &Mesh<'_>) -> Result<Links> {
    let mut links = links::connect(mesh)?;
    barrier::cross(mesh, &mut links)?;
    // The handshake read with deadlines, which stay on a socket. timely's
    // network threads take any read error as the end of the cluster: an
    // idle link would time out, and a read interrupted by a signal (a
    // short SIGSTOP) fails with EINTR only when a timeout is set.
    for stream in links.data.iter().flatten() {
        stream
            .set_read_timeout(None)
            .and_then(|()| stream.set_write_timeout(None))
            .map_err(|e| Error::Startup(format!("cannot set up a link for timely: {e}")))?;
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh(settings: &[(String, String)]) -> Vec<(String, String)> {
        Mesh {
            process: 0,
            processes: 2,
            workers: 1,
            hosts: &[],
            connect_timeout: Duration::from_secs(1),
            settings,
            secret: &[],
        }
        .agreed()
    }

    /// A thousand input paths go as a digest: the hello stays small, and
    /// two processes still see whether they were given the same.
    #[test]
    fn long_settings_are_compared_by_digest() {
        let inputs = |n: usize| {
            (0..n)
                .map(|i| format!("/data/day-{i:04}.jsonl"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let a = mesh(&[("--input".into(), inputs(1000))]);
        let b = mesh(&[("--input".into(), inputs(999))]);
        let input =
            |all: &[(String, String)]| all.iter().find(|(k, _)| k == "--input").unwrap().1.clone();
        assert!(input(&a).len() < 100, "{}", input(&a));
        assert_ne!(input(&a), input(&b));
        assert_eq!(a, mesh(&[("--input".into(), inputs(1000))]));
        assert!(a.iter().any(|(k, _)| k == crate::source::SPLIT_BYTES_ENV));
        let short = mesh(&[("--window".into(), "10m".into())]);
        assert!(short.contains(&("--window".into(), "10m".into())));
    }
}
