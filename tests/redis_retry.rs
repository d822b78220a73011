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

use keyflow::dataflow::source::{Batch, PollStatus, RedisStreamConfig, RedisStreamSource, Source};
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
    let redis = Redis::start(dir.path());
    let adds: String = (0..20).map(|i| format!("XADD s * n {i}\n")).collect();
    redis.cli_script(&adds);
    let port = redis
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = cutting_proxy(port);

    let config = RedisStreamConfig {
        url: format!("redis://127.0.0.1:{proxy}/0"),
        streams: vec!["s".into()],
        group: "g".into(),
        bounded: true,
        retry_for: Duration::from_secs(20),
    };
    let source = RedisStreamSource::new(config, |fields| {
        let n: u64 = fields
            .iter()
            .find(|(k, _)| k == "n")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or("no n")?;
        Ok((n, n))
    })
    .unwrap();
    let mut partition = source.open(0).unwrap();
    let mut got = Vec::new();
    for _ in 0..100 {
        // Five at a time: the lost read held the first five.
        let mut batch = Batch::new(5);
        let status = partition.poll(&mut batch).unwrap();
        got.extend(batch.records.iter().map(|(_, n)| *n));
        if status == PollStatus::Done {
            break;
        }
    }
    assert_eq!(got, (0..20).collect::<Vec<u64>>());
}
