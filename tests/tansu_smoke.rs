//! The tansu test harness itself: a real broker starts, takes a topic and
//! records from an independent producer, and an independent consumer reads
//! back exactly those records, per partition in order.

mod tansu_support;

use std::collections::HashMap;
use std::time::Duration;

use tansu_support::Tansu;

#[test]
fn produced_records_are_consumed_back_exactly() -> anyhow::Result<()> {
    // Dropped on every path out of the test, panics included: the broker
    // stops with it.
    let tansu = Tansu::start()?;
    assert!(tansu.address().starts_with("127.0.0.1:"));
    tansu.create_topic("smoke", 3)?;

    // Most records name their partition; every seventh leaves it to the
    // producer's partitioner, and is expected wherever the consumer finds
    // it.
    let records: Vec<(Option<i32>, String)> = (0..100)
        .map(|i| ((i % 7 != 6).then_some(i % 3), format!("record-{i:03}")))
        .collect();
    tansu.produce("smoke", &records)?;

    let got = tansu.consume("smoke", false, Duration::from_secs(60))?;
    let landed: HashMap<&str, i32> = got.iter().map(|r| (r.3.as_str(), r.0)).collect();
    assert_eq!(landed.len(), got.len(), "a record read twice: {got:?}");
    assert_eq!(got.len(), records.len(), "{got:?}");
    for (partition, value) in &records {
        let at = landed.get(value.as_str());
        assert!(at.is_some(), "{value} was not read back");
        if let Some(p) = partition {
            assert_eq!(at, Some(p), "{value}");
        }
    }
    for partition in 0..3 {
        let read: Vec<(i64, Option<&str>, &str)> = got
            .iter()
            .filter(|r| r.0 == partition)
            .map(|r| (r.1, r.2.as_deref(), r.3.as_str()))
            .collect();
        // Offsets from 0 without gaps (no transactions, so no markers),
        // no keys, and the values in the order they were sent.
        let want: Vec<(i64, Option<&str>, &str)> = records
            .iter()
            .filter(|(_, v)| landed[v.as_str()] == partition)
            .enumerate()
            .map(|(offset, (_, v))| (offset as i64, None, v.as_str()))
            .collect();
        assert!(!want.is_empty(), "nothing in partition {partition}");
        assert_eq!(read, want, "partition {partition}");
    }
    Ok(())
}
