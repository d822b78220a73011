//! The start barrier: no process starts timely until every process holds
//! all its connections, so a cluster that cannot form fails everywhere with
//! a reason instead of half-starting.

use std::time::Instant;

use super::frame::{read_frame, write_frame};
use super::{Links, Mesh};
use crate::error::{Error, Result};

pub fn cross(mesh: &Mesh<'_>, links: &mut Links) -> Result<()> {
    let deadline = Instant::now() + mesh.connect_timeout;
    let me = mesh.process;
    if me != 0 {
        let address = &mesh.hosts[0];
        let Some(to_zero) = links.control[0].as_mut() else {
            return Ok(());
        };
        let lost = |why: String| {
            Error::Startup(format!(
                "process {me}: process 0 ({address}) stopped while the cluster was starting: {why}"
            ))
        };
        write_frame(to_zero, b"ready").map_err(|e| lost(e.to_string()))?;
        let answer = read_frame(to_zero, deadline).map_err(|e| lost(e.to_string()))?;
        return match answer.strip_prefix(b"abort ") {
            _ if answer == b"go" => Ok(()),
            Some(reason) => Err(Error::Startup(format!(
                "process {me}: the cluster did not start: {}",
                String::from_utf8_lossy(reason)
            ))),
            None => Err(lost("an unexpected answer".into())),
        };
    }
    let mut failure = None;
    for p in 1..mesh.processes {
        let Some(link) = links.control[p].as_mut() else {
            continue;
        };
        match read_frame(link, deadline) {
            Ok(word) if word == b"ready" => {}
            Ok(_) => {
                failure = Some(format!(
                    "process {p} ({}) sent an unexpected message",
                    mesh.hosts[p]
                ));
                break;
            }
            Err(e) => {
                failure = Some(format!(
                    "process {p} ({}) stopped before the cluster started: {e}",
                    mesh.hosts[p]
                ));
                break;
            }
        }
    }
    let word = match &failure {
        Some(reason) => format!("abort {reason}").into_bytes(),
        None => b"go".to_vec(),
    };
    for link in links.control.iter_mut().flatten() {
        let _ = write_frame(link, &word);
    }
    match failure {
        Some(reason) => Err(Error::Startup(format!("process 0: {reason}"))),
        None => Ok(()),
    }
}
