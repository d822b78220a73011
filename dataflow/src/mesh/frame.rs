//! Length-prefixed frames with a size cap and a deadline, so that whatever
//! connects to a mesh port can neither make a process allocate without
//! bound nor hold it past its start-up timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// The largest frame a peer may send. Hellos carry a job's settings, which
/// are a few kilobytes at most.
pub const MAX_FRAME: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The deadline passed first.
    Timeout,
    /// The other side closed the connection.
    Closed,
    /// The length prefix is over [`MAX_FRAME`].
    TooLarge(usize),
    /// Any other socket error.
    Io(std::io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Timeout => write!(f, "timed out"),
            FrameError::Closed => write!(f, "connection closed"),
            FrameError::TooLarge(n) => {
                write!(f, "a {n}-byte frame is over the {MAX_FRAME}-byte limit")
            }
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Reads exactly `buf.len()` bytes, giving up at `deadline` however slowly
/// the bytes trickle in.
fn read_full(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<(), FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FrameError::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(FrameError::Io)?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(FrameError::Closed),
            Ok(n) => filled += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(FrameError::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_closed(&e) => return Err(FrameError::Closed),
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

fn is_closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
    )
}

/// Reads one frame: a big-endian `u32` length, then that many bytes.
pub fn read_frame(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    read_full(stream, &mut len, deadline)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    read_full(stream, &mut body, deadline)?;
    Ok(body)
}

/// Writes one frame.
pub fn write_frame(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    debug_assert!(body.len() <= MAX_FRAME);
    let mut bytes = Vec::with_capacity(4 + body.len());
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let (mut a, mut b) = pair();
        write_frame(&mut a, b"hello").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(read_frame(&mut b, deadline).unwrap(), b"hello");
        a.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(matches!(
            read_frame(&mut b, deadline),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn a_trickle_cannot_outlast_the_deadline() {
        let (mut a, mut b) = pair();
        let writer = std::thread::spawn(move || {
            a.write_all(&10u32.to_be_bytes()).unwrap();
            for _ in 0..20 {
                if a.write_all(&[0]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let start = Instant::now();
        let outcome = read_frame(&mut b, start + Duration::from_millis(300));
        assert!(matches!(outcome, Err(FrameError::Timeout)), "{outcome:?}");
        assert!(start.elapsed() < Duration::from_secs(1));
        drop(b);
        writer.join().unwrap();
    }
}
