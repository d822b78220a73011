//! Heartbeats on the control links. A peer that is killed closes its
//! connections at once, but one behind a broken route or stopped with
//! SIGSTOP goes silent while TCP keeps retrying for many minutes; timely
//! would wait for it forever. Every process therefore sends a beat to every
//! peer several times per `--peer-timeout` and exits with an error naming
//! the peer that stayed silent for the whole timeout.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::frame::{read_frame, write_frame, FrameError};

/// The running heartbeat of one process. [`Watch::bye`] tells the peers
/// that this process ended on purpose, so they stop expecting beats.
#[derive(Debug)]
pub struct Watch {
    links: Vec<(usize, TcpStream)>,
    stop: Arc<AtomicBool>,
}

/// What to do when a peer is lost: by default print the error and exit the
/// process with status 1, since timely cannot go on without the peer.
pub type OnLost = Arc<dyn Fn(String) + Send + Sync>;

/// The default [`OnLost`]: report and exit.
pub fn exit_on_lost() -> OnLost {
    Arc::new(|message| {
        use std::io::Write;
        // Not eprintln!, which panics when stderr is a closed pipe.
        let _ = writeln!(std::io::stderr(), "keyflow: error: {message}");
        std::process::exit(1);
    })
}

impl Watch {
    /// Starts beating on `control` (indexed by process) and watching every
    /// peer for silence longer than `timeout`.
    pub fn start(
        me: usize,
        hosts: &[String],
        control: Vec<Option<TcpStream>>,
        timeout: Duration,
        on_lost: OnLost,
    ) -> std::io::Result<Watch> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut links = Vec::new();
        for (peer, link) in control.into_iter().enumerate() {
            let Some(link) = link else { continue };
            let reader = link.try_clone()?;
            let (stop, on_lost, address) =
                (Arc::clone(&stop), Arc::clone(&on_lost), hosts[peer].clone());
            std::thread::Builder::new()
                .name(format!("keyflow-watch-{peer}"))
                .spawn(move || listen(me, peer, &address, reader, timeout, &stop, &on_lost))?;
            links.push((peer, link));
        }
        let beat = Duration::from_millis((timeout.as_millis() as u64 / 5).clamp(50, 1000));
        let mut writers = links
            .iter()
            .map(|(_, l)| l.try_clone())
            .collect::<std::io::Result<Vec<_>>>()?;
        for w in &writers {
            w.set_write_timeout(Some(timeout))?;
        }
        let beating = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("keyflow-beat".into())
            .spawn(move || {
                while !beating.load(Ordering::SeqCst) {
                    for w in writers.iter_mut() {
                        // A failed write is the listener's to report.
                        let _ = write_frame(w, b"beat");
                    }
                    std::thread::sleep(beat);
                }
            })?;
        Ok(Watch { links, stop })
    }

    /// Stops beating and tells every peer that this process is done.
    pub fn bye(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for (_, link) in self.links.iter_mut() {
            let _ = write_frame(link, b"bye");
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn listen(
    me: usize,
    peer: usize,
    address: &str,
    mut link: TcpStream,
    timeout: Duration,
    stop: &AtomicBool,
    on_lost: &OnLost,
) {
    loop {
        let heard = read_frame(&mut link, Instant::now() + timeout);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let why = match heard {
            Ok(word) if word == b"beat" => continue,
            Ok(word) if word == b"bye" => return,
            Ok(_) => "it sent an unexpected message".to_string(),
            Err(FrameError::Timeout) => format!(
                "nothing heard for {} (--peer-timeout); the network between them is down or \
                 the process is stopped",
                humantime::format_duration(timeout)
            ),
            Err(FrameError::Closed) => "its connection closed; the process has stopped".to_string(),
            Err(e) => e.to_string(),
        };
        on_lost(format!(
            "process {me} lost process {peer} ({address}): {why}"
        ));
        return;
    }
}
