//! The commit point of [`HourlyDumpSink`], and its restore.
//!
//! An update under allowed lateness carries only the articles it changed,
//! and the sink rewrites the hour's file from the totals it keeps; a run
//! resumed with none kept would rewrite a written hour with only the
//! update. So the checkpoint keeps the totals of the hours that updates
//! may still reach: each commit saves the totals written since the last
//! one as a blob (an epoch writes only what is new, not an hour of
//! totals), and its commit point names the kept hours and the blobs that
//! hold their totals. A restore reads the blobs in order, a later total
//! of an article replacing an earlier one, as in the sink.

use std::collections::BTreeMap;
use std::path::PathBuf;

use keyflow_dataflow::checkpoint::{decode, encode};
use keyflow_dataflow::sink::Blobs;
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::{Error, Result};

use super::hourly::HourlyDumpSink;
use crate::pageviews::Article;

const WHAT: &str = "hourly dump sink commit point";

/// The commit point: the kept hours, and the blobs that hold their totals,
/// oldest first, each with the hours it holds.
type Point = (Vec<EventTime>, Vec<(String, Vec<EventTime>)>);

/// A blob: totals by hour.
type Totals = Vec<(EventTime, Vec<(Article, u64)>)>;

pub(super) fn commit_point(sink: &mut HourlyDumpSink, blobs: &mut dyn Blobs) -> Result<Vec<u8>> {
    // The first commit saves every kept total; later ones what changed.
    let changed = match sink.changed.replace(BTreeMap::new()) {
        Some(changed) => changed,
        None => sink.hours.clone(),
    };
    let kept = &sink.hours;
    sink.blobs
        .retain(|(_, hours)| hours.iter().any(|h| kept.contains_key(h)));
    for (name, _) in &sink.blobs {
        blobs.keep(name);
    }
    let new: Totals = changed
        .into_iter()
        .filter(|(hour, totals)| !totals.is_empty() && kept.contains_key(hour))
        .map(|(hour, totals)| (hour, totals.into_iter().collect()))
        .collect();
    if !new.is_empty() {
        let name = blobs.save(encode(&new)?)?;
        sink.blobs
            .push((name, new.iter().map(|(hour, _)| *hour).collect()));
    }
    let point: Point = (kept.keys().copied().collect(), sink.blobs.clone());
    encode(&point)
}

pub(super) fn restore(
    sink: &mut HourlyDumpSink,
    point: &[u8],
    blobs: &mut dyn Blobs,
) -> Result<()> {
    sink.hours.clear();
    sink.changed = Some(BTreeMap::new());
    sink.blobs.clear();
    if point.is_empty() {
        // A checkpoint of a run that kept no totals.
        return Ok(());
    }
    let (kept, saved): Point = decode(point, WHAT)?;
    for &hour in &kept {
        sink.hours.insert(hour, BTreeMap::new());
    }
    for (name, hours) in saved {
        let totals: Totals = decode(&blobs.read(&name)?, WHAT)?;
        for (hour, rows) in totals {
            if !hours.contains(&hour) {
                return Err(Error::Checkpoint {
                    path: PathBuf::from(&name),
                    reason: format!(
                        "it holds totals of hour {hour}, which its point does not name"
                    ),
                });
            }
            // Totals of an hour no longer kept are dropped, as the sink
            // dropped them.
            if let Some(kept) = sink.hours.get_mut(&hour) {
                kept.extend(rows);
            }
        }
        sink.blobs.push((name, hours));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use keyflow_dataflow::sink::Sink;
    use keyflow_dataflow::testing::MemoryBlobs;
    use keyflow_dataflow::time::{HOUR, MINUTE};
    use keyflow_dataflow::window::WindowResult;

    use super::*;
    use crate::trending::hourly_file_name;

    const H: EventTime = 1_470_009_600_000;

    fn total(
        title: &str,
        hour: EventTime,
        views: u64,
        update: bool,
    ) -> (EventTime, WindowResult<Article, u64>) {
        let r = WindowResult {
            key: Article::named("en", title),
            start: hour,
            end: hour + HOUR,
            value: views,
            update,
        };
        (hour + HOUR - 1, r)
    }

    fn file(dir: &std::path::Path, hour: EventTime) -> String {
        std::fs::read_to_string(dir.join(hourly_file_name(hour))).unwrap()
    }

    /// An update after a restore rewrites the hour with every article's
    /// total, as the run that was not stopped does.
    #[test]
    fn an_update_after_a_restore_rewrites_the_whole_hour() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let keep = 10 * MINUTE;
        let closed = [total("A", H, 3, false), total("B", H, 5, false)];
        let update = [total("B", H, 6, true)];

        let mut straight = HourlyDumpSink::create(&a, keep).unwrap();
        straight.write(H + HOUR, &closed).unwrap();
        straight.write(H + HOUR + MINUTE, &update).unwrap();
        assert_eq!(file(&a, H), "en A 3 0\nen B 6 0\n");

        let mut blobs = MemoryBlobs::default();
        let mut first = HourlyDumpSink::create(&b, keep).unwrap();
        first.commit_with(&mut blobs).unwrap();
        first.write(H + HOUR, &closed).unwrap();
        let point = first.commit_with(&mut blobs).unwrap();
        drop(first);
        let mut resumed = HourlyDumpSink::create(&b, keep).unwrap();
        resumed.restore_with(&point, &mut blobs).unwrap();
        resumed.write(H + HOUR + MINUTE, &update).unwrap();
        assert_eq!(file(&b, H), file(&a, H));
    }

    /// Each commit saves only what changed since the last one, and a blob
    /// is let go once no update can reach its hours.
    #[test]
    fn commits_save_what_changed_and_let_go_of_past_hours() {
        let dir = tempfile::tempdir().unwrap();
        let keep = 10 * MINUTE;
        let mut blobs = MemoryBlobs::default();
        let mut sink = HourlyDumpSink::create(dir.path(), keep).unwrap();
        sink.write(H + HOUR, &[total("A", H, 3, false)]).unwrap();
        sink.commit_with(&mut blobs).unwrap();
        assert_eq!(blobs.len(), 1, "the first commit saves what is kept");
        sink.commit_with(&mut blobs).unwrap();
        assert_eq!(blobs.len(), 1, "nothing changed");
        sink.write(H + HOUR + MINUTE, &[total("B", H, 1, true)])
            .unwrap();
        let point = sink.commit_with(&mut blobs).unwrap();
        assert_eq!(blobs.len(), 2);
        let (kept, saved): Point = decode(&point, WHAT).unwrap();
        assert_eq!((kept, saved.len()), (vec![H], 2));

        // Past the lateness, the hour and its blobs are let go.
        sink.write(H + 2 * HOUR, &[total("C", H + HOUR, 2, false)])
            .unwrap();
        let point = sink.commit_with(&mut blobs).unwrap();
        let (kept, saved): Point = decode(&point, WHAT).unwrap();
        assert_eq!(kept, vec![H + HOUR]);
        assert_eq!(saved.len(), 1);

        let mut resumed = HourlyDumpSink::create(dir.path(), keep).unwrap();
        resumed.restore_with(&point, &mut blobs).unwrap();
        assert_eq!(resumed.hours.len(), 1);
        assert_eq!(resumed.hours[&(H + HOUR)].len(), 1);
    }

    /// A point that does not decode, or a blob that is missing, fails the
    /// restore with a checkpoint error.
    #[test]
    fn a_damaged_point_fails_the_restore() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = HourlyDumpSink::create(dir.path(), MINUTE).unwrap();
        let mut blobs = MemoryBlobs::default();
        assert!(sink.restore_with(b"\xff", &mut blobs).is_err());
        let point = encode(&(vec![H], vec![("blob-9".to_string(), vec![H])])).unwrap();
        let err = sink.restore_with(&point, &mut blobs).unwrap_err();
        assert!(err.to_string().contains("blob-9"), "{err}");
        assert!(
            sink.restore_with(&[], &mut blobs).is_ok(),
            "an earlier run's empty point"
        );
    }
}
