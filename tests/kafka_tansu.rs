//! The Kafka source and sink against a real Kafka-compatible broker
//! process (tansu, see `tansu_support`), with kafka-python as the
//! independent producer and consumer: events an outside producer wrote
//! give the same trending output as the same events from a file, and
//! `--out kafka://` with checkpoints delivers each result once.
#![cfg(feature = "kafka")]

mod checkpoint_support;
mod tansu_support;

use std::time::Duration;

use checkpoint_support::*;
use tansu_support::Tansu;

#[test]
fn events_from_an_outside_producer_give_the_files_output() -> anyhow::Result<()> {
    let tansu = Tansu::start()?;
    let dir = tempfile::tempdir()?;
    let events = dir.path().join("events.jsonl");
    let (code, err) = finish(&s(&[
        "generate",
        "--to",
        &p(&events),
        "--articles",
        "200",
        "--rate",
        "10",
        "--duration",
        "80m",
        "--seed",
        "11",
    ]));
    assert_eq!(code, 0, "{err}");
    // Spread over three partitions by line, each partition in time order.
    let lines: Vec<(Option<i32>, String)> = std::fs::read_to_string(&events)?
        .lines()
        .enumerate()
        .map(|(i, l)| (Some((i % 3) as i32), l.to_string()))
        .collect();
    tansu.create_topic("events", 3)?;
    tansu.create_topic("results", 2)?;
    tansu.produce("events", &lines)?;

    let want = dir.path().join("want.jsonl");
    let (code, err) = finish(&s(&[
        "run",
        "trending",
        "--quiet",
        "--top",
        "0",
        "--input",
        &p(&events),
        "--out",
        &p(&want),
    ]));
    assert_eq!(code, 0, "{err}");
    let want = String::from_utf8(read(&want))?;
    assert!(want.lines().any(|l| !l.contains("\"trending\":0")));

    let input = format!("kafka://{}/events", tansu.address());
    let got = dir.path().join("got.jsonl");
    let run = |out: &str, extra: &[&str]| {
        let mut a = s(&["run", "trending", "--quiet", "--top", "0"]);
        a.extend(s(&[
            "--input-format",
            "kafka",
            "--input",
            &input,
            "--bounded",
        ]));
        a.extend(s(&["--out", out, "--connect-timeout", "60s"]));
        a.extend(s(extra));
        finish(&a)
    };
    let (code, err) = run(&p(&got), &["--workers", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        String::from_utf8(read(&got))? == want,
        "the topic's output differs from the file's"
    );

    // Results into a topic, through transactions (checkpoints on).
    let ck = dir.path().join("ckpt");
    let results = format!("kafka://{}/results", tansu.address());
    let (code, err) = run(&results, &["--checkpoint-dir", &p(&ck)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        committed_lines(&tansu, "results")?,
        want.lines().collect::<Vec<_>>()
    );

    // Killed once a checkpoint is complete, then run again to the end:
    // still every result once.
    tansu.create_topic("killed", 2)?;
    let ck = dir.path().join("killed.ckpt");
    let mut args = s(&["run", "trending", "--quiet", "--top", "0"]);
    args.extend(s(&[
        "--input-format",
        "kafka",
        "--input",
        &input,
        "--bounded",
    ]));
    args.extend(s(&[
        "--connect-timeout",
        "60s",
        "--checkpoint-dir",
        &p(&ck),
        // Many checkpoints, so many transactions for the kill to cut.
        "--checkpoint-every",
        "10s",
    ]));
    args.extend(s(&[
        "--out",
        &format!("kafka://{}/killed", tansu.address()),
    ]));
    let mut child = cmd(&args).spawn()?;
    let start = std::time::Instant::now();
    while child.try_wait()?.is_none() && start.elapsed() < Duration::from_secs(120) {
        if has_complete_epoch(&ck) {
            child.kill()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.wait();
    let (code, err) = finish(&args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        committed_lines(&tansu, "killed")?,
        want.lines().collect::<Vec<_>>()
    );
    Ok(())
}

/// The values a `read_committed` consumer finds in `topic`, ordered by
/// their keys (the minutes).
fn committed_lines(tansu: &Tansu, topic: &str) -> anyhow::Result<Vec<String>> {
    let mut read_back = tansu.consume(topic, true, Duration::from_secs(90))?;
    read_back.sort_by_key(|r| r.2.as_deref().and_then(|k| k.parse::<u64>().ok()));
    Ok(read_back.into_iter().map(|r| r.3).collect())
}
