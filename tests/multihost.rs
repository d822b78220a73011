//! Two hosts in network namespaces, named and started as the StatefulSet in
//! `deploy/k8s` names and starts its pods: each runs the manifest's command
//! from a container filesystem (the image that `deploy/build-image.sh`
//! exported, when `KEYFLOW_IMAGE_ROOTFS` names it; otherwise the same
//! layout staged from this build), with `HOSTNAME=keyflow-N` and an
//! `/etc/hosts` that resolves the pod names, and one checkpoint directory
//! bound into both, as the manifest's shared claim. Their output must equal a
//! single process's. Then a long run is partitioned by taking one host's
//! link down: both processes must exit non-zero within `--peer-timeout`
//! plus a few seconds, process 0 naming the lost peer.
//!
//! Needs root (namespaces, chroot); as another user it says so and passes.

mod cluster_support;
mod deploy_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cluster_support::{data, wait_bounded, KEYFLOW};
use deploy_support::{pod_command, with_flag};

fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
}

/// The namespaces, their hosts files and the processes in them; all
/// removed on drop, whichever way the test ends.
struct Hosts {
    names: Vec<String>,
    veths: Vec<String>,
    addresses: Vec<String>,
    running: Vec<Child>,
}

impl Hosts {
    fn new(n: usize) -> Hosts {
        let pid = std::process::id();
        let tag = format!("kf{}", pid % 100_000);
        let hosts = Hosts {
            names: (0..n).map(|i| format!("{tag}h{i}")).collect(),
            veths: (0..n).map(|i| format!("{tag}v{i}")).collect(),
            addresses: (0..n)
                .map(|i| format!("10.{}.{}.{}", 200 + pid % 50, (pid / 50) % 250, i + 1))
                .collect(),
            running: Vec::new(),
        };
        assert_eq!(n, 2, "one veth pair joins two hosts");
        for name in &hosts.names {
            sh("ip", &["netns", "add", name]);
        }
        let (v0, v1) = (&hosts.veths[0], &hosts.veths[1]);
        sh(
            "ip",
            &["link", "add", v0, "type", "veth", "peer", "name", v1],
        );
        for i in 0..n {
            let (ns, veth, addr) = (&hosts.names[i], &hosts.veths[i], &hosts.addresses[i]);
            sh("ip", &["link", "set", veth, "netns", ns]);
            sh(
                "ip",
                &["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", veth],
            );
            sh("ip", &["-n", ns, "link", "set", veth, "up"]);
            sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        hosts
    }

    /// `/etc/hosts` for every host: the pod names of the StatefulSet.
    fn hosts_file(&self) -> String {
        let mut text = String::from("127.0.0.1 localhost\n");
        for (i, addr) in self.addresses.iter().enumerate() {
            text.push_str(&format!("{addr} keyflow-{i}.keyflow keyflow-{i}\n"));
        }
        text
    }

    /// Runs `command` as pod `i`: in its namespace, chrooted into `root`.
    fn start(&mut self, i: usize, root: &Path, command: &[String]) {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.names[i],
                "env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            ])
            .arg(format!("HOSTNAME=keyflow-{i}"))
            .arg("KEYFLOW_CLUSTER_SECRET=multi-host-test")
            .args(["chroot", "--userspec=65532:65532"])
            .arg(root)
            .args(command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.running.push(child);
    }

    /// Waits for every started process, at most `limit` in all.
    fn wait_all(&mut self, limit: Duration) -> (Vec<Output>, Duration) {
        let start = Instant::now();
        let outputs = self
            .running
            .drain(..)
            .map(|c| wait_bounded(c, limit.saturating_sub(start.elapsed())).0)
            .collect();
        (outputs, start.elapsed())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// The checkpoint claim of `deploy/k8s/checkpoints.yaml`, one directory
/// that every pod mounts: bound into each host's filesystem, and unbound on
/// drop (lazily, so that a process still in it does not keep it).
struct Shared {
    mounts: Vec<PathBuf>,
}

impl Shared {
    fn checkpoints(dir: &Path, roots: &[PathBuf]) -> Shared {
        let shared = dir.join("checkpoints");
        std::fs::create_dir_all(&shared).unwrap();
        sh("chmod", &["0777", shared.to_str().unwrap()]);
        let mut bound = Shared { mounts: Vec::new() };
        for root in roots {
            let at = root.join("work/checkpoints");
            std::fs::create_dir_all(&at).unwrap();
            sh(
                "mount",
                &["--bind", shared.to_str().unwrap(), at.to_str().unwrap()],
            );
            bound.mounts.push(at);
        }
        bound
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for at in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(at).status();
        }
    }
}

/// A container filesystem for one host: a hard-linked copy of the exported
/// image, or the same layout staged from this build's binary.
fn root_for(i: usize, dir: &Path, hosts_file: &str) -> PathBuf {
    let root = dir.join(format!("host{i}"));
    match std::env::var("KEYFLOW_IMAGE_ROOTFS") {
        Ok(image) if Path::new(&image).join("usr/local/bin/keyflow").exists() => {
            // Hard links where the copy is on the same file system.
            let linked = Command::new("cp")
                .args(["-al", &image, root.to_str().unwrap()])
                .status()
                .is_ok_and(|s| s.success());
            if !linked {
                let _ = std::fs::remove_dir_all(&root);
                sh("cp", &["-a", &image, root.to_str().unwrap()]);
            }
        }
        Ok(image) => panic!("KEYFLOW_IMAGE_ROOTFS={image} holds no usr/local/bin/keyflow"),
        Err(_) => stage(&root),
    }
    std::fs::write(root.join("etc/hosts"), hosts_file).unwrap();
    std::fs::create_dir_all(root.join("etc/keyflow")).unwrap();
    let manifest_hosts = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/hosts");
    std::fs::copy(manifest_hosts, root.join("etc/keyflow/hosts")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    for input in inputs() {
        std::fs::copy(&input, root.join("data").join(input.file_name().unwrap())).unwrap();
    }
    let state = root.join("work/state");
    std::fs::create_dir_all(&state).unwrap();
    sh("chmod", &["0777", state.to_str().unwrap()]);
    root
}

/// What `deploy/build-image.sh` puts in the image, from this build.
fn stage(root: &Path) {
    for sub in ["usr/local/bin", "etc", "tmp", "work"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    sh("chmod", &["1777", root.join("tmp").to_str().unwrap()]);
    sh("chmod", &["0777", root.join("work").to_str().unwrap()]);
    let binary = root.join("usr/local/bin/keyflow");
    if std::fs::hard_link(KEYFLOW, &binary).is_err() {
        std::fs::copy(KEYFLOW, &binary).unwrap();
    }
    let ldd = Command::new("ldd").arg(KEYFLOW).output().unwrap();
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let to = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(lib, to).unwrap();
    }
    std::fs::write(root.join("etc/nsswitch.conf"), "hosts: files dns\n").unwrap();
}

fn inputs() -> Vec<PathBuf> {
    (10..12)
        .map(|h| {
            data(&format!(
                "pagecounts-2016-08/pagecounts-20160801-{h:02}0000.gz"
            ))
        })
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn pods_in_two_namespaces_match_one_process_and_a_partition_stops_both() {
    if !is_root() {
        eprintln!("multihost: skipped: network namespaces and chroot need root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = Hosts::new(2);
    let hosts_file = hosts.hosts_file();
    let roots: Vec<PathBuf> = (0..2)
        .map(|i| root_for(i, dir.path(), &hosts_file))
        .collect();
    let _shared = Shared::checkpoints(dir.path(), &roots);
    let command = pod_command();

    for (i, root) in roots.iter().enumerate() {
        hosts.start(i, root, &command);
    }
    let (outs, _) = hosts.wait_all(Duration::from_secs(180));
    for (i, out) in outs.iter().enumerate() {
        assert!(out.status.success(), "host {i}: {}", stderr(out));
    }
    let single = dir.path().join("single.jsonl");
    let status = Command::new(KEYFLOW)
        .args([
            "run",
            "trending",
            "--input-format",
            "dump",
            "--quiet",
            "--input",
        ])
        .args(inputs())
        .arg("--out")
        .arg(&single)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let clustered = std::fs::read(roots[0].join("work/state/trending.jsonl")).unwrap();
    assert!(!clustered.is_empty());
    assert_eq!(clustered, std::fs::read(&single).unwrap());

    // A long run on the generator, then host 1's link goes down.
    let mut long = with_flag(&command, "--input", None);
    long = with_flag(&long, "--input-format", None);
    long = with_flag(&long, "--peer-timeout", Some("5s"));
    long = with_flag(&long, "--checkpoint-dir", Some("/work/checkpoints/long"));
    long = with_flag(&long, "--out", Some("/work/state/long.jsonl"));
    long.extend(
        [
            "--articles",
            "1000",
            "--rate",
            "50",
            "--duration",
            "2h",
            "--realtime",
        ]
        .map(String::from),
    );
    for root in &roots {
        let _ = std::fs::remove_file(root.join("tmp/ready"));
    }
    for (i, root) in roots.iter().enumerate() {
        hosts.start(i, root, &long);
    }
    let start = Instant::now();
    while !roots.iter().all(|r| r.join("tmp/ready").exists()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the long run never formed its mesh"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    sh(
        "ip",
        &[
            "-n",
            &hosts.names[1],
            "link",
            "set",
            &hosts.veths[1],
            "down",
        ],
    );
    let (outs, elapsed) = hosts.wait_all(Duration::from_secs(30));
    for (i, out) in outs.iter().enumerate() {
        assert!(
            !out.status.success(),
            "host {i} did not fail: {}",
            stderr(out)
        );
    }
    assert!(
        elapsed < Duration::from_secs(30),
        "the partition was noticed after {elapsed:?}"
    );
    let zero = stderr(&outs[0]);
    assert!(
        zero.contains("process 0 lost process 1 (keyflow-1.keyflow:2101)"),
        "{zero}"
    );
    let one = stderr(&outs[1]);
    assert!(
        one.contains("process 1 lost process 0 (keyflow-0.keyflow:2101)"),
        "{one}"
    );
}
