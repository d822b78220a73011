//! Heartbeats on the control links. A peer that is killed closes its
//! connections at once, but one behind a broken route or stopped with
//! SIGSTOP goes silent while TCP keeps retrying for many minutes; timely
//! would wait for it forever. Every process therefore sends a beat to every
//! peer several times per `--peer-timeout` and exits with an error naming
//! the peer that stayed silent for the whole timeout.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::frame::{read_frame, write_frame, FrameError, MAX_FRAME};

/// The running heartbeat of one process. [`Watch::bye`] tells the peers
/// that this process ended on purpose, so they stop expecting beats.
pub struct Watch {
    /// The write halves, by peer; one writer at a time, so that frames of
    /// the beat thread and of [`Watch::bye`] never interleave.
    links: Arc<Mutex<Vec<(usize, TcpStream)>>>,
    /// Stops the beats.
    stop: Arc<AtomicBool>,
    /// Stops the listeners reporting a lost peer: set once nothing this
    /// process does depends on its peers any more.
    quiet: Arc<AtomicBool>,
    /// How many peers said they ended well.
    byes: Arc<AtomicUsize>,
    reports: Reports,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// Receives process `peer`'s report.
pub type TakeReport = Arc<dyn Fn(usize, &[u8]) + Send + Sync>;

/// What the beats to process 0 carry: `make` writes this process's report
/// (at most a frame's size; a larger one is left out and a plain beat goes
/// instead), and `take` receives a peer's, on process 0.
#[derive(Clone)]
pub struct Reports {
    /// This process's report now.
    pub make: Arc<dyn Fn() -> Vec<u8> + Send + Sync>,
    /// A report from process `peer`.
    pub take: TakeReport,
    /// Process `peer` failed with this error.
    pub failed: TakeReport,
}

impl Reports {
    /// Reports that carry nothing.
    pub fn none() -> Reports {
        Reports {
            make: Arc::new(Vec::new),
            take: Arc::new(|_, _| {}),
            failed: Arc::new(|_, _| {}),
        }
    }
}

/// The first bytes of a report frame.
const REPORT: &[u8] = b"report ";

/// The first bytes of the frame that says this process failed, and why.
const FAILED: &[u8] = b"failed ";

/// Sends `word` to every peer; to process 0 a report goes first, which
/// stands for a beat.
fn beat_all(links: &Mutex<Vec<(usize, TcpStream)>>, reports: &Reports, word: &[u8]) {
    let mut links = links.lock().unwrap_or_else(|p| p.into_inner());
    for (peer, w) in links.iter_mut() {
        // Failed writes are the listeners' to report.
        if *peer == 0 {
            let mut frame = REPORT.to_vec();
            frame.extend((reports.make)());
            if frame.len() > REPORT.len() && frame.len() <= MAX_FRAME {
                let _ = write_frame(w, &frame);
                if word == b"beat" {
                    continue;
                }
            }
        }
        let _ = write_frame(w, word);
    }
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
        reports: Reports,
    ) -> std::io::Result<Watch> {
        let stop = Arc::new(AtomicBool::new(false));
        let quiet = Arc::new(AtomicBool::new(false));
        let byes = Arc::new(AtomicUsize::new(0));
        let mut links = Vec::new();
        for (peer, link) in control.into_iter().enumerate() {
            let Some(link) = link else { continue };
            let reader = link.try_clone()?;
            let (quiet, on_lost, address) = (
                Arc::clone(&quiet),
                Arc::clone(&on_lost),
                hosts[peer].clone(),
            );
            let take = Arc::clone(&reports.take);
            let failed = Arc::clone(&reports.failed);
            let byes = Arc::clone(&byes);
            std::thread::Builder::new()
                .name(format!("keyflow-watch-{peer}"))
                .spawn(move || {
                    let peer_at = Peer {
                        me,
                        peer,
                        address: &address,
                    };
                    let heard = Heard {
                        take: &take,
                        failed: &failed,
                        byes: &byes,
                    };
                    listen(&peer_at, reader, timeout, &quiet, &on_lost, &heard)
                })?;
            link.set_write_timeout(Some(timeout))?;
            links.push((peer, link));
        }
        let beat = Duration::from_millis((timeout.as_millis() as u64 / 5).clamp(50, 1000));
        let links = Arc::new(Mutex::new(links));
        let (beating, writers, beat_reports) =
            (Arc::clone(&stop), Arc::clone(&links), reports.clone());
        std::thread::Builder::new()
            .name("keyflow-beat".into())
            .spawn(move || {
                while !beating.load(Ordering::SeqCst) {
                    beat_all(&writers, &beat_reports, b"beat");
                    std::thread::sleep(beat);
                }
            })?;
        Ok(Watch {
            links,
            stop,
            quiet,
            byes,
            reports,
        })
    }

    /// What tells every peer that this process failed with `message`; a
    /// peer then stops its own workers (see [`Reports::failed`]). The
    /// beats go on, so that the peers do not report this process lost.
    pub fn announcer(&self) -> impl Fn(&str) + Send + Sync + 'static {
        let links = Arc::clone(&self.links);
        move |message: &str| {
            let mut frame = FAILED.to_vec();
            frame.extend(message.bytes().take(MAX_FRAME - FAILED.len()));
            let mut links = links.lock().unwrap_or_else(|p| p.into_inner());
            for (_, w) in links.iter_mut() {
                // A peer that cannot be told finds out when this one exits.
                let _ = write_frame(w, &frame);
            }
        }
    }

    /// Stops beating, sends process 0 a last report, and tells every peer
    /// that this process ended well; then waits until every peer has said
    /// the same, and returns true, or until `failed` turns true (a peer
    /// reported its failure), and returns false. A peer that stops or goes
    /// silent meanwhile is lost, as while the job ran. The peers need no
    /// more beats: each stops listening here once it has this goodbye.
    pub fn bye(self, failed: impl Fn() -> bool) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        beat_all(&self.links, &self.reports, b"bye");
        let peers = self.links.lock().unwrap_or_else(|p| p.into_inner()).len();
        loop {
            if failed() {
                return false;
            }
            if self.byes.load(Ordering::SeqCst) >= peers {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.quiet.store(true, Ordering::SeqCst);
    }
}

/// Who a listener listens to, for its messages.
struct Peer<'a> {
    me: usize,
    peer: usize,
    address: &'a str,
}

/// What a listener hands on: reports, failures and goodbyes.
struct Heard<'a> {
    take: &'a TakeReport,
    failed: &'a TakeReport,
    byes: &'a AtomicUsize,
}

fn listen(
    at: &Peer<'_>,
    mut link: TcpStream,
    timeout: Duration,
    quiet: &AtomicBool,
    on_lost: &OnLost,
    heard_from: &Heard<'_>,
) {
    let Peer { me, peer, address } = *at;
    let Heard { take, failed, byes } = *heard_from;
    loop {
        let heard = read_frame(&mut link, Instant::now() + timeout);
        // A report counts even after this process stopped: a peer's last
        // one comes just before its goodbye, which may be after ours.
        if let Ok(Some(report)) = heard.as_ref().map(|w| w.strip_prefix(REPORT)) {
            take(peer, report);
            continue;
        }
        if let Ok(Some(message)) = heard.as_ref().map(|w| w.strip_prefix(FAILED)) {
            failed(peer, message);
            continue;
        }
        let why = match heard {
            Ok(word) if word == b"bye" => {
                byes.fetch_add(1, Ordering::SeqCst);
                return;
            }
            // This process no longer depends on the peer.
            _ if quiet.load(Ordering::SeqCst) => return,
            Ok(word) if word == b"beat" => continue,
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
