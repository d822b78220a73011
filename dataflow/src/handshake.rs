//! A start-up handshake between the processes of a cluster, before timely
//! connects them.
//!
//! timely trusts every process to be started with the same worker count and
//! host list; if they differ, messages go to workers that do not exist and
//! the processes crash or hang. So each process first reports its settings
//! to process 0, which checks that all agree and answers everyone at once.
//! Only process 0 listens during the handshake, and it closes its listener
//! before timely binds the same address, so the handshake never takes one of
//! timely's own connections.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What the handshake checks that every process agrees on: the cluster's
/// layout. It is its own type so that this module does not depend on the
/// run module that calls it.
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
    /// How long to wait for the other processes.
    pub connect_timeout: Duration,
}

fn hello(config: &Mesh<'_>) -> String {
    format!(
        "keyflow-hello v1 process={} processes={} workers={} hosts={}\n",
        config.process,
        config.processes,
        config.workers,
        config.hosts.join(",")
    )
}

/// What a hello line says, minus the sender's index.
fn settings(line: &str) -> Option<(usize, String)> {
    let rest = line.trim().strip_prefix("keyflow-hello v1 process=")?;
    let (index, settings) = rest.split_once(' ')?;
    Some((index.parse().ok()?, settings.to_string()))
}

fn describe(settings: &str) -> String {
    settings
        .split(' ')
        .map(|kv| format!("--{}", kv.replacen('=', " ", 1)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the handshake for this process; returns once every process of the
/// cluster has been seen with the same settings.
pub fn handshake(config: &Mesh<'_>) -> Result<()> {
    if config.processes <= 1 {
        return Ok(());
    }
    let deadline = Instant::now() + config.connect_timeout;
    if config.process == 0 {
        coordinate(config, deadline)
    } else {
        report(config, deadline)
    }
}

fn coordinate(config: &Mesh<'_>, deadline: Instant) -> Result<()> {
    let address = &config.hosts[0];
    let listener = TcpListener::bind(address)
        .map_err(|e| Error::Startup(format!("process 0 cannot listen on {address}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Startup(e.to_string()))?;
    let mine = settings(&hello(config)).map(|(_, s)| s).unwrap_or_default();
    let mut peers: Vec<Option<TcpStream>> = (0..config.processes).map(|_| None).collect();
    let mut mismatch = None;
    while peers.iter().skip(1).any(Option::is_none) {
        if Instant::now() >= deadline {
            let missing: Vec<usize> = (1..config.processes)
                .filter(|i| peers[*i].is_none())
                .collect();
            return Err(Error::Startup(format!(
                "process 0 (listening on {address}) did not hear from processes {missing:?} within {}; \
                 check that they were started with the same host file and that the ports are open",
                humantime::format_duration(config.connect_timeout)
            )));
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                let mut reader = BufReader::new(&stream);
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let Some((index, theirs)) = settings(&line) else {
                    continue;
                };
                if index == 0 || index >= config.processes {
                    mismatch.get_or_insert(format!(
                        "a process reports index {index}, outside 0..{}",
                        config.processes
                    ));
                } else if theirs != mine {
                    mismatch.get_or_insert(format!(
                        "process {index} was started with `{}` but process 0 with `{}`",
                        describe(&theirs),
                        describe(&mine)
                    ));
                }
                if index < config.processes {
                    peers[index] = Some(stream);
                }
                if mismatch.is_some() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::Startup(format!("process 0 on {address}: {e}"))),
        }
    }
    let answer = match &mismatch {
        Some(reason) => format!("mismatch {reason}\n"),
        None => "ok\n".to_string(),
    };
    // Close the listener before anyone hears "ok": a peer that then connects
    // for timely must be refused (and retry) rather than queue on this
    // socket, whose closing would reset that connection.
    drop(listener);
    for mut stream in peers.into_iter().flatten() {
        let _ = stream.write_all(answer.as_bytes());
    }
    match mismatch {
        Some(reason) => Err(Error::Config(format!(
            "the cluster's processes disagree: {reason}; start them all with the same --processes, --workers and host file"
        ))),
        None => Ok(()),
    }
}

fn report(config: &Mesh<'_>, deadline: Instant) -> Result<()> {
    let address = &config.hosts[0];
    let timeout_error = || {
        Error::Startup(format!(
            "process {} could not reach process 0 at {address} within {}; \
             check that it runs, with the same --processes/--workers and host file, and that the port is open",
            config.process,
            humantime::format_duration(config.connect_timeout)
        ))
    };
    loop {
        let attempt = address
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).ok());
        if let Some(mut stream) = attempt {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let _ = stream.set_read_timeout(Some(remaining.max(Duration::from_secs(1))));
            stream
                .write_all(hello(config).as_bytes())
                .map_err(|e| Error::Startup(format!("process {}: {e}", config.process)))?;
            let mut line = String::new();
            BufReader::new(&stream)
                .read_line(&mut line)
                .map_err(|_| timeout_error())?;
            let line = line.trim();
            if line == "ok" {
                return Ok(());
            }
            if let Some(reason) = line.strip_prefix("mismatch ") {
                return Err(Error::Config(format!(
                    "the cluster's processes disagree: {reason}; start them all with the same --processes, --workers and host file"
                )));
            }
            return Err(timeout_error());
        }
        if Instant::now() >= deadline {
            return Err(timeout_error());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
