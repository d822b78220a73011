//! Accepting and dialing the connections of the mesh.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::greet::{self, GreetError};
use super::hello::Channel;
use super::{Links, Mesh};
use crate::error::{Error, Result};

/// How long one connection's handshake may take, so that a slow stranger
/// holds a handler thread only briefly.
const GREET_LIMIT: Duration = Duration::from_secs(10);
/// At most this many connections are being greeted at once; more are closed
/// unread, so a flood of connections cannot exhaust threads.
const MAX_PENDING: usize = 32;

enum Event {
    Link(usize, Channel, TcpStream),
    Fatal(Error),
}

fn format_duration(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64))
}

/// Resolves `address`, retrying until `deadline`: a pod's DNS name exists
/// only once the pod does.
fn resolve(address: &str, deadline: Instant) -> std::result::Result<SocketAddr, String> {
    loop {
        let last = match address.to_socket_addrs() {
            Ok(mut found) => match found.next() {
                Some(a) => return Ok(a),
                None => "the name has no addresses".to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Connects to every other process; returns the links once all are up.
pub fn connect(mesh: &Mesh<'_>) -> Result<Links> {
    let deadline = Instant::now() + mesh.connect_timeout;
    let settings = mesh.agreed();
    let (tx, rx) = mpsc::channel();
    let done = Arc::new(AtomicBool::new(false));
    let me = mesh.process;
    if me + 1 < mesh.processes {
        let address = mesh.hosts[me].clone();
        let bound = resolve(&address, deadline).map_err(|e| {
            Error::Startup(format!(
                "process {me} cannot resolve its own address {address}: {e}"
            ))
        })?;
        let listener = TcpListener::bind(bound).map_err(|e| {
            Error::Startup(format!(
                "process {me} cannot listen on {address} ({bound}): {e}"
            ))
        })?;
        let (tx, done) = (tx.clone(), Arc::clone(&done));
        let (secret, processes) = (mesh.secret.to_vec(), mesh.processes);
        let settings = settings.clone();
        std::thread::Builder::new()
            .name("keyflow-accept".into())
            .spawn(move || {
                accept_all(
                    listener, me, processes, &secret, &settings, deadline, &tx, &done,
                )
            })
            .map_err(|e| Error::Startup(e.to_string()))?;
    }
    if me > 0 {
        let hosts = mesh.hosts.to_vec();
        let (tx, done) = (tx.clone(), Arc::clone(&done));
        let secret = mesh.secret.to_vec();
        let settings = settings.clone();
        std::thread::Builder::new()
            .name("keyflow-dial".into())
            .spawn(move || dial_all(&hosts, me, &secret, &settings, deadline, &tx, &done))
            .map_err(|e| Error::Startup(e.to_string()))?;
    }
    drop(tx);
    let outcome = collect(mesh, &rx, deadline);
    done.store(true, Ordering::SeqCst);
    outcome
}

fn collect(mesh: &Mesh<'_>, rx: &Receiver<Event>, deadline: Instant) -> Result<Links> {
    let n = mesh.processes;
    let mut links = Links {
        data: (0..n).map(|_| None).collect(),
        control: (0..n).map(|_| None).collect(),
    };
    let missing = |links: &Links| -> Vec<usize> {
        (0..n)
            .filter(|&p| {
                p != mesh.process && (links.data[p].is_none() || links.control[p].is_none())
            })
            .collect()
    };
    while !missing(&links).is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Link(p, channel, stream)) => {
                let slot = match channel {
                    Channel::Data => &mut links.data[p],
                    Channel::Control => &mut links.control[p],
                };
                // A second connection for a slot already filled is a stray
                // retry or an impostor: the first, verified one stays.
                slot.get_or_insert(stream);
            }
            Ok(Event::Fatal(e)) => return Err(e),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                let missing = missing(&links);
                let listed: Vec<String> = missing
                    .iter()
                    .map(|&p| format!("{p} ({})", mesh.hosts[p]))
                    .collect();
                return Err(Error::Startup(format!(
                    "process {} (at {}) could not connect to processes {} within {}; check that they \
                     run, with the same host list and cluster secret, and that the ports are open",
                    mesh.process,
                    mesh.hosts[mesh.process],
                    listed.join(", "),
                    format_duration(mesh.connect_timeout)
                )));
            }
        }
    }
    Ok(links)
}

#[allow(clippy::too_many_arguments)]
fn accept_all(
    listener: TcpListener,
    me: usize,
    processes: usize,
    secret: &[u8],
    settings: &[(String, String)],
    deadline: Instant,
    tx: &Sender<Event>,
    done: &AtomicBool,
) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    let pending = Arc::new(AtomicUsize::new(0));
    while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
        let (mut stream, from) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if pending.load(Ordering::SeqCst) >= MAX_PENDING {
            tracing::warn!("mesh: closed a connection from {from}: too many handshakes under way");
            continue;
        }
        pending.fetch_add(1, Ordering::SeqCst);
        let (tx, pending) = (tx.clone(), Arc::clone(&pending));
        let (secret, mine) = (secret.to_vec(), greet::hello(me, Channel::Data, settings));
        let spawned = std::thread::Builder::new()
            .name("keyflow-greet".into())
            .spawn(move || {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                let limit = deadline.min(Instant::now() + GREET_LIMIT);
                let expects = |p: usize| p > me && p < processes;
                match greet::accept(&mut stream, &secret, &mine, expects, limit) {
                    Ok(theirs) => {
                        let _ = tx.send(Event::Link(theirs.process, theirs.channel, stream));
                    }
                    Err(GreetError::Mismatch(reason)) => {
                        let _ = tx.send(Event::Fatal(disagree(&reason)));
                    }
                    Err(GreetError::Stranger(why)) | Err(GreetError::Refused(why)) => {
                        tracing::warn!("mesh: refused a connection from {from}: {why}");
                    }
                }
                pending.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            // The closure (and its count) is gone with the failed spawn.
            tracing::warn!("mesh: could not start a thread for a connection from {from}");
        }
    }
}

fn disagree(reason: &str) -> Error {
    Error::Config(format!(
        "the cluster's processes disagree: {reason}; give every process the same flags \
         (only --process may differ)"
    ))
}

fn dial_all(
    hosts: &[String],
    me: usize,
    secret: &[u8],
    settings: &[(String, String)],
    deadline: Instant,
    tx: &Sender<Event>,
    done: &AtomicBool,
) {
    for (to, address) in hosts.iter().enumerate().take(me) {
        for channel in [Channel::Data, Channel::Control] {
            if done.load(Ordering::SeqCst) {
                return;
            }
            let mine = greet::hello(me, channel, settings);
            match dial_one(address, to, secret, &mine, deadline, done) {
                Ok(stream) => {
                    let _ = tx.send(Event::Link(to, channel, stream));
                }
                Err(Some(e)) => {
                    let _ = tx.send(Event::Fatal(e));
                    return;
                }
                // Out of time: the collector reports who is missing.
                Err(None) => return,
            }
        }
    }
}

fn dial_one(
    address: &str,
    to: usize,
    secret: &[u8],
    mine: &super::hello::Hello,
    deadline: Instant,
    done: &AtomicBool,
) -> std::result::Result<TcpStream, Option<Error>> {
    let me = mine.process;
    let mut last_stranger = None;
    while Instant::now() < deadline && !done.load(Ordering::SeqCst) {
        let attempt = address
            .to_socket_addrs()
            .ok()
            .and_then(|mut found| found.next())
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).ok());
        let Some(mut stream) = attempt else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let limit = deadline.min(Instant::now() + GREET_LIMIT);
        match greet::dial(&mut stream, secret, mine, to, limit) {
            Ok(()) => return Ok(stream),
            Err(GreetError::Mismatch(reason)) => return Err(Some(disagree(&reason))),
            Err(GreetError::Refused(why)) => {
                return Err(Some(Error::Config(format!(
                    "process {me}: process {to} at {address} refused the connection: {why}"
                ))))
            }
            Err(GreetError::Stranger(why)) => {
                // Something else answered (or the peer restarted mid-way):
                // keep trying until the deadline, then say what was seen.
                if last_stranger.is_none() {
                    tracing::warn!("mesh: {address} (process {to}): {why}; retrying");
                }
                last_stranger = Some(why);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    match last_stranger {
        Some(why) => Err(Some(Error::Startup(format!(
            "process {me} could not connect to process {to} at {address}: {why}"
        )))),
        None => Err(None),
    }
}
