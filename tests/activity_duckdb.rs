//! The activity job's Parquet files as a data-lake reader sees them: DuckDB
//! (its Python package) reads `DIR/**/*.parquet` with Hive partitioning and
//! must find exactly the rows the rules give.
//!
//! The test installs what it needs: a Python virtual environment under
//! cargo's target directory (made once, then reused) with the `duckdb`
//! package from PyPI. It needs `python3` with the `venv` module
//! (`bash scripts/install-deps.sh python3 python3-venv`) and, the first
//! time, network access to PyPI.

mod activity_support;
mod trending_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use activity_support::{
    events, expected_rows, files, hour_path, split_late, write_files, Row, Shape,
};
use serde_json::Value;
use trending_support::{arg, keyflow};

/// Runs `program args`, failing the test with `what` and the output when
/// it fails or runs past `limit`.
fn run_bounded(what: &str, program: &Path, args: &[&str], limit: Duration) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {}: {e}", program.display()));
    let start = Instant::now();
    // Outputs are small (pip runs quietly), so they fit the pipes' buffers
    // until the process exits.
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: ran past {limit:?}, killed\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Python of a virtual environment with `duckdb`, made on first use in
/// cargo's target directory and reused after.
fn duckdb_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("duckdb-venv");
    let python = venv.join("bin").join("python");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import duckdb"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if ready {
        return python;
    }
    // A half-made environment from an interrupted run is made again.
    let _ = std::fs::remove_dir_all(&venv);
    let system = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        system,
        "python3 is needed to read the Parquet files with DuckDB: \
         bash scripts/install-deps.sh python3 python3-venv"
    );
    run_bounded(
        "python3 -m venv (install python3-venv: bash scripts/install-deps.sh python3-venv)",
        Path::new("python3"),
        &["-m", "venv", venv.to_str().unwrap()],
        Duration::from_secs(120),
    );
    let pip = venv.join("bin").join("pip");
    run_bounded(
        "pip install duckdb (needs network access to PyPI the first time)",
        &pip,
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--timeout",
            "60",
            "duckdb",
        ],
        Duration::from_secs(600),
    );
    python
}

const QUERY: &str = r#"
import duckdb, json, sys
rows = duckdb.sql(f"""
    select epoch_ms(window_start), epoch_ms(window_end), user_id,
           views, clicks, scrolls, add_to_cart, purchases, searches,
           mean_click_x, mean_click_y, cast(date as varchar), cast(hour as varchar)
    from read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning = true)
    order by window_start, user_id
""").fetchall()
for r in rows:
    print(json.dumps(r))
"#;

#[test]
fn duckdb_reads_exactly_the_expected_rows() {
    let python = duckdb_python();
    let dir = tempfile::tempdir().unwrap();
    let shape = Shape {
        sessions: 150,
        users: 30,
        span: 100 * 60_000,
    };
    let all = events(21, shape);
    let split = files(21, &all, 2, 3_000, 30);
    let paths = write_files(dir.path(), &split);
    let (on_time, _) = split_late(&split, 5_000);
    let lake = dir.path().join("lake");
    let mut args: Vec<String> = [
        "run",
        "activity",
        "--quiet",
        "--window",
        "7m",
        "--workers",
        "2",
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        "--parquet-out".to_string(),
        arg(&lake),
        "--input".to_string(),
    ]);
    args.extend(paths.iter().map(|p| arg(p)));
    keyflow(&args, Duration::from_secs(120)).assert_success("activity");

    let script = dir.path().join("query.py");
    std::fs::write(&script, QUERY).unwrap();
    let printed = run_bounded(
        "the DuckDB query",
        &python,
        &[script.to_str().unwrap(), lake.to_str().unwrap()],
        Duration::from_secs(120),
    );
    let mut got = Vec::new();
    for line in printed.lines() {
        let v: Vec<Value> = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let int = |i: usize| {
            v[i].as_i64()
                .unwrap_or_else(|| panic!("column {i} of {line}"))
        };
        let mean = match (&v[9], &v[10]) {
            (Value::Null, Value::Null) => None,
            (x, y) => Some((x.as_f64().unwrap(), y.as_f64().unwrap())),
        };
        let row = Row {
            start: int(0),
            end: int(1),
            user: v[2].as_str().unwrap().to_string(),
            counts: std::array::from_fn(|c| int(3 + c)),
            mean,
        };
        // The Hive columns name the hour the window starts in.
        // (DuckDB may read `hour=07` as text or as a number.)
        let hour: u32 = v[12].as_str().unwrap().parse().unwrap();
        let hive = format!("date={}/hour={hour:02}", v[11].as_str().unwrap());
        assert_eq!(
            hive,
            hour_path(row.start as u64 / 3_600_000 * 3_600_000),
            "{line}"
        );
        got.push(row);
    }
    let want = expected_rows(&on_time, 7 * 60_000);
    assert!(
        want.len() > 100,
        "the fixture made only {} rows",
        want.len()
    );
    assert_eq!(got, want);
}
