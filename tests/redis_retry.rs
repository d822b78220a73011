//! A stream read whose reply is lost with its connection (the server
//! delivered the entries, the client never saw them): the source reads
//! them again from its consumer's pending list, so none is lost and the
//! order holds. A proxy between the source and a real `redis-server` cuts
//! the connection right after the server answers the first `XREADGROUP >`.

mod redis_support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyflow::dataflow::source::{
    Batch, Partition, PollStatus, RedisStreamConfig, RedisStreamSource, Source,
};
use redis_support::Redis;

/// Copies `from` to `to` until either closes; once `swallow` is set, drops
/// what `from` sends next and closes both (a reply lost with the
/// connection).
fn copy(mut from: TcpStream, mut to: TcpStream, swallow: Option<Arc<AtomicBool>>) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        if swallow
            .as_ref()
            .is_some_and(|s| s.swap(false, Ordering::SeqCst))
        {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

/// A proxy to `upstream` on a port of its own; the reply to the first
/// `XREADGROUP ... >` that passes it is lost with its connection.
fn cutting_proxy(upstream: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tripped = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        // Bounded: the source connects a few times at most.
        for client in listener.incoming().take(16) {
            let Ok(client) = client else { break };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                break;
            };
            let swallow = Arc::new(AtomicBool::new(false));
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let reply = Arc::clone(&swallow);
            std::thread::spawn(move || copy(s2, c2, Some(reply)));
            let tripped = Arc::clone(&tripped);
            std::thread::spawn(move || {
                let (mut client, mut server) = (client, server);
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = client.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if text.contains("XREADGROUP")
                        && text.contains("\r\n>\r\n")
                        && !tripped.swap(true, Ordering::SeqCst)
                    {
                        swallow.store(true, Ordering::SeqCst);
                    }
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = server.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

#[test]
fn entries_of_a_read_lost_with_its_connection_are_read_again_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let redis = twenty_entries(dir.path());
    let proxy = cutting_proxy(redis.port);
    let mut partition = source(proxy).open(0).unwrap();
    // Five at a time: the lost read held the first five.
    assert_eq!(read_all(&mut *partition, 5), (0..20).collect::<Vec<u64>>());
}

/// The same after a restore, while this consumer's pending list still
/// holds what the stopped run was handed past the checkpoint: none of it
/// is read twice.
#[test]
fn a_lost_read_after_a_restore_reads_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let redis = twenty_entries(dir.path());
    let port = redis.port;
    // The stopped run read every entry; its checkpoint holds the first five.
    let mut stopped = source(port).open(0).unwrap();
    // (The first poll reads the pending list, empty here.)
    let mut first = Batch::new(5);
    for _ in 0..10 {
        if first.records.is_empty() {
            stopped.poll(&mut first).unwrap();
        }
    }
    assert_eq!(first.records.len(), 5);
    let position = stopped.position().unwrap();
    assert_eq!(read_all(&mut *stopped, 100), (5..20).collect::<Vec<u64>>());
    drop(stopped);

    // Unbounded, as a stream is read for months: a bounded read would end
    // at the last entry before reading anything twice.
    let proxy = cutting_proxy(port);
    let mut resumed = source_of(proxy, false).open_at(0, position).unwrap();
    assert_eq!(read_all(&mut *resumed, 5), (5..20).collect::<Vec<u64>>());
}

/// A bounded source of stream `s` in group `g` through `port`, whose
/// entries are their field `n`.
fn source(port: u16) -> RedisStreamSource<u64> {
    source_of(port, true)
}

fn source_of(port: u16, bounded: bool) -> RedisStreamSource<u64> {
    let config = RedisStreamConfig {
        url: format!("redis://127.0.0.1:{port}/0"),
        streams: vec!["s".into()],
        group: "g".into(),
        bounded,
        retry_for: Duration::from_secs(20),
    };
    RedisStreamSource::new(config, |fields| {
        let n: u64 = fields
            .iter()
            .find(|(k, _)| k == "n")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or("no n")?;
        Ok((n, n))
    })
    .unwrap()
}

/// Polls `partition`, `limit` at a time, to its end (a bounded read) or
/// until it has been idle three polls running (an unbounded one).
fn read_all(partition: &mut dyn Partition<u64>, limit: usize) -> Vec<u64> {
    let mut got = Vec::new();
    let mut idle = 0;
    for _ in 0..100 {
        let mut batch = Batch::new(limit);
        let status = partition.poll(&mut batch).unwrap();
        got.extend(batch.records.iter().map(|(_, n)| *n));
        match status {
            PollStatus::Done => return got,
            PollStatus::Idle => idle += 1,
            _ => idle = 0,
        }
        if idle == 3 {
            return got;
        }
    }
    panic!("no end after 100 polls: {got:?}");
}

/// A server whose stream `s` holds 20 entries, field `n` from 0 to 19.
fn twenty_entries(dir: &std::path::Path) -> Redis {
    let redis = Redis::start(dir);
    let adds: String = (0..20).map(|i| format!("XADD s * n {i}\n")).collect();
    redis.cli_script(&adds);
    redis
}
