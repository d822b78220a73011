//! `spare_core` inside a job: its own test binary, since every job started
//! in a process sets what it reads.

use keyflow_dataflow::run::{run_workers, spare_core, RunConfig};

#[test]
fn a_job_with_fewer_workers_than_cores_has_a_spare_core() {
    assert!(!spare_core(), "no job has started yet");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for workers in [1, 2] {
        let seen = run_workers(&RunConfig::threads(workers), |_, _| Ok(spare_core())).unwrap();
        assert_eq!(
            seen,
            vec![cores > workers; workers],
            "{workers} workers, {cores} cores"
        );
    }
}
