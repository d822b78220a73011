//! Unit tests of the behaviour job's parts: the series, the generator.

use keyflow_dataflow::source::{Batch, PollStatus, Source};
use keyflow_operators::rate_alert::{Percent, RateAlert, RateWatch};

use super::*;

fn series(resolution: u64, window: usize) -> Series {
    let rule = RateAlert {
        rise: Percent::whole(100),
        min: 2,
    };
    Series::new(resolution, RateWatch::new(rule, window, 4).unwrap())
}

const LAND: Measure = Measure::Flow(UserState::None, UserState::Landed);
const LEAVE: Measure = Measure::Flow(UserState::Landed, UserState::Gone);

#[test]
fn counts_before_the_first_change_join_the_first_report() {
    let mut s = series(10, 6);
    s.add(10, Measure::LateDropped, 2);
    s.add(30, LAND, 1);
    s.add(30, Measure::OnTime, 1);
    s.add(40, LEAVE, 1);
    let mut out = Vec::new();
    s.emit(|b| b <= 20, false, 0, &mut out);
    assert!(out.is_empty(), "the first change is not complete yet");
    s.emit(|_| true, true, 0, &mut out);
    let q = out[0].quality;
    assert_eq!((out[0].t, q.received, q.dropped, q.counted), (30, 3, 2, 1));
    assert_eq!(out.iter().map(|r| r.t).collect::<Vec<_>>(), vec![30, 40]);
}

#[test]
fn a_quiet_gap_waits_for_later_changes_and_the_end_stops_it() {
    let mut s = series(10, 6);
    s.add(10, LAND, 1);
    s.add(20, LEAVE, 1);
    let mut out = Vec::new();
    s.emit(|b| b <= 50, false, 0, &mut out);
    assert_eq!(out.len(), 2, "nobody is active after 20: 30 waits");
    assert_eq!(s.pending_from(), Some(30));
    s.add(60, LAND, 2);
    s.add(70, Measure::Flow(UserState::Landed, UserState::Gone), 2);
    s.emit(|_| true, true, 0, &mut out);
    let times: Vec<_> = out.iter().map(|r| r.t).collect();
    assert_eq!(times, vec![10, 20, 30, 40, 50, 60, 70]);
    assert_eq!(out[3].populations, [0; 4]);
    assert!(out[3].flows.is_empty());
}

#[test]
fn an_idle_stretch_longer_than_the_bound_is_reported_by_its_end() {
    let kept = MAX_IDLE_REPORTS;
    for (gap, reported) in [(kept, kept), (kept + 1, kept), (3 * kept, kept)] {
        let mut s = series(10, 6);
        s.add(10, LAND, 1);
        s.add(20, LEAVE, 1);
        // One step after the leave, then `gap` idle intervals before the
        // next change.
        let change = 30 + gap * 10;
        s.add(change, LAND, 2);
        s.add(change, Measure::OnTime, 2);
        s.add(40, Measure::LateDropped, 1);
        s.add(change + 10, LEAVE, 2);
        let mut out = Vec::new();
        s.emit(|_| true, true, 0, &mut out);
        let times: Vec<_> = out.iter().map(|r| r.t).collect();
        assert_eq!(times.len() as u64, 2 + reported + 2, "gap {gap}");
        assert_eq!(times[..2], [10, 20]);
        assert_eq!(times[2], change - reported * 10, "gap {gap}");
        assert!(times[2..].windows(2).all(|w| w[1] == w[0] + 10));
        // What the cut intervals counted joins the first report after them.
        let q = out.iter().find(|r| r.t >= 40).unwrap().quality;
        assert_eq!((q.received, q.dropped), (1, 1), "gap {gap}");
        assert_eq!(out.last().unwrap().quality.received, 3);
    }
}

#[test]
fn alerts_compare_with_one_window_before_and_start_once() {
    let mut s = series(10, 2);
    // Landed: 2 at 10, 2 at 20, 5 at 30 (> 2 * 2), 6 at 40 (> 2 * 2 still).
    for (b, n) in [(10, 2), (30, 3), (40, 1)] {
        s.add(b, LAND, n);
    }
    s.add(50, LEAVE, 6);
    let mut out = Vec::new();
    s.emit(|_| true, true, 0, &mut out);
    let alerts: Vec<_> = out.iter().flat_map(|r| r.alert_lines()).collect();
    assert_eq!(
        alerts,
        vec![AlertLine {
            t: 30,
            state: UserState::Landed,
            was: 2,
            now: 5
        }]
    );
}

#[test]
fn the_series_survives_a_checkpoint() {
    let mut s = series(10, 3);
    s.add(10, LAND, 4);
    let mut out = Vec::new();
    s.emit(|b| b <= 10, false, 0, &mut out);
    let bytes = keyflow_dataflow::checkpoint::encode(&Some(&s)).unwrap();
    let back: Option<Series> = keyflow_dataflow::checkpoint::decode(&bytes, "series").unwrap();
    assert_eq!(back, Some(s));
}

fn generated(partitions: usize) -> Vec<(u64, UserEvent)> {
    let config = UserGeneratorConfig {
        users: 1_000,
        duration_ms: 5 * 60_000,
        partitions,
        ..Default::default()
    };
    let src = UserGenerator::new(config).unwrap();
    let mut all = Vec::new();
    for p in 0..src.partitions() {
        let mut part = src.open(p).unwrap();
        loop {
            let mut batch = Batch::new(4096);
            let status = part.poll(&mut batch).unwrap();
            assert!(batch.records.windows(2).all(|w| w[0].0 <= w[1].0));
            all.extend(batch.records);
            if status == PollStatus::Done {
                break;
            }
        }
    }
    all.sort();
    all
}

#[test]
fn the_generator_does_not_depend_on_its_partitions() {
    let one = generated(1);
    assert_eq!(one, generated(3));
    assert_eq!(one, generated(8));
    assert!(one.len() > 5_000, "{}", one.len());
    assert!(one.iter().all(|(ts, e)| *ts == e.ts));
    let buys = one.iter().filter(|(_, e)| e.op == Op::Buy).count();
    assert!(buys > 0);
}
