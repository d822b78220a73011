use super::*;
use keyflow_operators::moving_average::CumulativeAverage;

fn art(t: &str) -> Article {
    Article::named("en", t)
}

fn shard(keys: &[(&str, [f64; HOURS])], days: u64) -> Shard {
    let mut base = Baseline::empty();
    base.days = days;
    if days > 0 {
        base.first_day = Some(0);
        base.last_day = Some(0);
    }
    for (t, a) in keys {
        base.keys.insert(art(t), *a);
    }
    Shard::from_baseline(&base, |_| true).unwrap()
}

#[test]
fn scores_follow_the_formulas() {
    let mut a = [0.0; HOURS];
    a[0] = 4.0;
    a[1] = 2.0;
    let mut s = shard(&[("A", a), ("Zero", [0.0; HOURS])], 1);
    s.add(art("A"), 0, 2);
    s.add(art("A"), 2, 3);
    s.add(art("New"), 1, 5);
    // Canberra over hours 0..=2: |2-4|/6 + |0-2|/2 + |3-0|/3.
    let top = s.score(2, Metric::Canberra, 0.0, 0).unwrap();
    let got: Vec<(String, f64)> = top
        .iter()
        .map(|x| (x.article.title().into_owned(), x.score))
        .collect();
    let expected_a = 2.0 / 6.0 + 1.0 + 1.0;
    assert_eq!(
        got,
        vec![
            ("A".into(), expected_a),
            ("New".into(), 1.0),
            ("Zero".into(), 0.0)
        ]
    );
    // Bray-Curtis: (2 + 2 + 3) / (6 + 2 + 3); volume filter drops "Zero" and "New" (5).
    let top = s.score(2, Metric::BrayCurtis, 6.0, 0).unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].score, 7.0 / 11.0);
    // Only hours 0..=hour count: at hour 0, A's volume is 6.
    assert!(s.score(0, Metric::Canberra, 6.5, 0).unwrap().is_empty());
}

#[test]
fn top_k_breaks_ties_by_article() {
    let mut s = shard(&[], 0);
    for i in 0..500 {
        s.add(
            Article::named(if i % 2 == 0 { "en" } else { "de" }, format!("T{i:03}")),
            0,
            1 + i % 3,
        );
    }
    // Every score is 1 (no baseline): "de" titles first, in title order.
    let top = s.score(0, Metric::Canberra, 0.0, 3).unwrap();
    let names: Vec<String> = top.iter().map(|x| x.article.to_string()).collect();
    assert_eq!(names, vec!["de T001", "de T003", "de T005"]);
}

#[test]
fn end_day_is_the_cumulative_moving_average() {
    let mut a = [0.0; HOURS];
    a[3] = 7.0;
    let mut s = shard(&[("Old", a), ("Quiet", [1.0; HOURS])], 2);
    let mut expect: std::collections::HashMap<&str, CumulativeAverage> = Default::default();
    expect.insert(
        "Old",
        CumulativeAverage {
            n: 2,
            values: a.to_vec(),
        },
    );
    expect.insert(
        "Quiet",
        CumulativeAverage {
            n: 2,
            values: vec![1.0; HOURS],
        },
    );
    expect.insert(
        "New",
        CumulativeAverage {
            n: 2,
            values: vec![0.0; HOURS],
        },
    );
    let days: [&[(&str, usize, u64)]; 2] = [
        &[("Old", 3, 10), ("New", 5, 4)],
        &[("New", 5, 9), ("Old", 0, 1)],
    ];
    for (d, day) in days.iter().enumerate() {
        let mut x: std::collections::HashMap<&str, [f64; HOURS]> = Default::default();
        for &(t, h, v) in day.iter() {
            s.add(art(t), h, v);
            x.entry(t).or_insert([0.0; HOURS])[h] += v as f64;
        }
        s.end_day(86_400_000 * (d as u64 + 1));
        for (t, avg) in expect.iter_mut() {
            avg.update(&x.get(t).copied().unwrap_or([0.0; HOURS]))
                .unwrap();
        }
    }
    assert_eq!(s.days, 4);
    assert_eq!((s.first_day, s.last_day), (Some(0), Some(2 * 86_400_000)));
    for (t, avg) in &expect {
        let tracked = &s.keys[&art(t)];
        assert_eq!(tracked.base.to_vec(), avg.values, "{t}");
        assert_eq!(tracked.today, [0; HOURS]);
    }
    // "New": 4 views on day 3, 9 on day 4, none on the two days before.
    assert_eq!(s.keys[&art("New")].base[5], (4.0 + 9.0) / 4.0);
}
