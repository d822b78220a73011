//! One connection's handshake, from either side. The acceptor speaks
//! first with a fresh nonce; the dialer answers with its own nonce, its
//! hello and a MAC over both nonces; the acceptor checks the MAC, the index
//! and the settings, and answers with its own hello, a verdict and a MAC,
//! so each side knows the other holds the cluster secret.

use std::net::TcpStream;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::frame::{read_frame, write_frame, FrameError};
use super::hello::{first_difference, mac, nonce, verify, Channel, Hello, Verdict, MAGIC, NONCE};

const MAC: usize = 32;

/// What went wrong in one handshake.
#[derive(Debug)]
pub enum GreetError {
    /// The other side is not a keyflow peer of this cluster, or misbehaved;
    /// the connection is dropped and the mesh keeps waiting.
    Stranger(String),
    /// A genuine peer disagrees with this one: the cluster cannot start.
    Mismatch(String),
    /// The peer refused this process (a wrong secret, an unexpected index).
    Refused(String),
}

#[derive(Serialize, Deserialize)]
struct Answer {
    hello: Hello,
    verdict: Verdict,
}

fn stranger(e: FrameError) -> GreetError {
    GreetError::Stranger(e.to_string())
}

/// The acceptor's side. `expects` says whether a dialer's index is one
/// this process waits for.
pub fn accept(
    stream: &mut TcpStream,
    secret: &[u8],
    mine: &Hello,
    expects: impl Fn(usize) -> bool,
    deadline: Instant,
) -> Result<Hello, GreetError> {
    let nonce_a = nonce();
    let mut greeting = MAGIC.to_vec();
    greeting.extend_from_slice(&nonce_a);
    write_frame(stream, &greeting).map_err(|e| GreetError::Stranger(e.to_string()))?;
    let reply = read_frame(stream, deadline).map_err(stranger)?;
    if reply.len() < NONCE + MAC {
        return Err(GreetError::Stranger(format!(
            "a {}-byte reply is too short",
            reply.len()
        )));
    }
    let (nonce_b, rest) = reply.split_at(NONCE);
    let (tag, body) = rest.split_at(MAC);
    let deny = |stream: &mut TcpStream, why: String| {
        let answer = Answer {
            hello: mine.clone(),
            verdict: Verdict::Denied(why.clone()),
        };
        let mut frame = vec![0u8; MAC];
        frame.extend(serde_json::to_vec(&answer).unwrap_or_default());
        let _ = write_frame(stream, &frame);
        GreetError::Stranger(why)
    };
    if !verify(secret, b"dial", &[&nonce_a, nonce_b, body], tag) {
        return Err(deny(
            stream,
            "its hello is not signed with this cluster's secret".into(),
        ));
    }
    let theirs: Hello = serde_json::from_slice(body)
        .map_err(|e| GreetError::Stranger(format!("its hello does not parse: {e}")))?;
    if !expects(theirs.process) {
        return Err(deny(
            stream,
            format!(
                "process {} does not expect a connection from process {}",
                mine.process, theirs.process
            ),
        ));
    }
    let verdict = match first_difference(
        mine.process,
        &mine.settings,
        theirs.process,
        &theirs.settings,
    ) {
        Some(reason) => Verdict::Mismatch(reason),
        None => Verdict::Ok,
    };
    let answer = serde_json::to_vec(&Answer {
        hello: mine.clone(),
        verdict: verdict.clone(),
    })
    .map_err(|e| GreetError::Stranger(e.to_string()))?;
    let mut frame = mac(secret, b"accept", &[&nonce_a, nonce_b, &answer]);
    frame.extend(answer);
    write_frame(stream, &frame).map_err(|e| GreetError::Stranger(e.to_string()))?;
    match verdict {
        Verdict::Mismatch(reason) => Err(GreetError::Mismatch(reason)),
        _ => Ok(theirs),
    }
}

/// The dialer's side, connected to the address of process `to`.
pub fn dial(
    stream: &mut TcpStream,
    secret: &[u8],
    mine: &Hello,
    to: usize,
    deadline: Instant,
) -> Result<(), GreetError> {
    let greeting = read_frame(stream, deadline).map_err(stranger)?;
    if greeting.len() != MAGIC.len() + NONCE || &greeting[..MAGIC.len()] != MAGIC {
        return Err(GreetError::Stranger(
            "what answers there is not a keyflow process".into(),
        ));
    }
    let nonce_a = &greeting[MAGIC.len()..];
    let nonce_b = nonce();
    let body = serde_json::to_vec(mine).map_err(|e| GreetError::Stranger(e.to_string()))?;
    let mut frame = nonce_b.to_vec();
    frame.extend(mac(secret, b"dial", &[nonce_a, &nonce_b, &body]));
    frame.extend_from_slice(&body);
    write_frame(stream, &frame).map_err(|e| GreetError::Stranger(e.to_string()))?;
    let reply = read_frame(stream, deadline).map_err(stranger)?;
    if reply.len() < MAC {
        return Err(GreetError::Stranger("its answer is too short".into()));
    }
    let (tag, body) = reply.split_at(MAC);
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| GreetError::Stranger(format!("its answer does not parse: {e}")))?;
    if let Verdict::Denied(why) = answer.verdict {
        return Err(GreetError::Refused(why));
    }
    if !verify(secret, b"accept", &[nonce_a, &nonce_b, body], tag) {
        return Err(GreetError::Refused(
            "it did not prove that it holds this cluster's secret".into(),
        ));
    }
    if answer.hello.process != to {
        return Err(GreetError::Refused(format!(
            "it says it is process {}, not process {to}",
            answer.hello.process
        )));
    }
    match answer.verdict {
        Verdict::Mismatch(reason) => Err(GreetError::Mismatch(reason)),
        _ => Ok(()),
    }
}

/// A hello for `channel`.
pub fn hello(process: usize, channel: Channel, settings: &[(String, String)]) -> Hello {
    Hello {
        process,
        channel,
        settings: settings.to_vec(),
    }
}
