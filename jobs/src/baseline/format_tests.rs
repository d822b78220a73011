use super::*;

fn sample() -> Baseline {
    let mut base = Baseline::empty();
    base.days = 3;
    base.first_day = Some(1_470_009_600_000);
    base.last_day = Some(1_470_009_600_000 + 2 * 86_400_000);
    let mut a = [0.0; HOURS];
    a[0] = 1.0 / 3.0;
    a[5] = 146.0;
    a[23] = 1e-9;
    base.keys.insert(Article::named("en", "Simon_Pegg"), a);
    base.keys
        .insert(Article::named("de", "Simon"), [2.5; HOURS]);
    // A project named like the trailer must not end the file early.
    base.keys.insert(Article::named("end", "1"), [0.0; HOURS]);
    base
}

fn parse(text: &str) -> Result<Baseline> {
    Reader::new(Path::new("base.txt"), text.as_bytes()).read()
}

fn reason(text: &str) -> String {
    match parse(text) {
        Err(Error::Format { reason, .. }) => reason,
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn round_trips_exactly() {
    let base = sample();
    let text = base.to_text();
    assert!(text.starts_with(
        "keyflow-baseline 1\ndays 3\nfirst-day 2016-08-01\nlast-day 2016-08-03\nkeys 3\n"
    ));
    assert_eq!(parse(&text).unwrap(), base);
    let empty = Baseline::empty();
    assert_eq!(parse(&empty.to_text()).unwrap(), empty);
}

#[test]
fn other_versions_and_headers_are_named() {
    let text = sample()
        .to_text()
        .replacen("keyflow-baseline 1", "keyflow-baseline 2", 1);
    let r = reason(&text);
    assert!(r.contains("line 1") && r.contains("version 2"), "{r}");
    assert!(reason("hello\n").contains("bad header"));
    assert!(reason("").contains("empty file"));
    assert!(!reason("").contains("line 0"), "{}", reason(""));
    let r = reason("keyflow-baseline\u{1b}[31m 1\n");
    assert!(r.contains("\\u{1b}[31m") && !r.contains('\u{1b}'), "{r}");
    assert!(reason("keyflow-baseline x\n").contains("bad format version"));
    let text = sample().to_text().replacen("days 3", "dayz 3", 1);
    let r = reason(&text);
    assert!(r.contains("line 2") && r.contains("expected `days"), "{r}");
}

#[test]
fn truncation_is_detected_at_every_cut() {
    let text = sample().to_text();
    for cut in 0..text.len() {
        if !text.is_char_boundary(cut) {
            continue;
        }
        assert!(parse(&text[..cut]).is_err(), "cut at {cut} parsed");
    }
    let lines: Vec<&str> = text.lines().collect();
    let without_last_row = format!(
        "{}\n{}\n",
        lines[..lines.len() - 2].join("\n"),
        lines[lines.len() - 1]
    );
    assert!(reason(&without_last_row).contains("damaged"));
}

#[test]
fn damage_is_detected() {
    let text = sample().to_text();
    let damaged = text.replacen("146", "147", 1);
    let r = reason(&damaged);
    assert!(r.contains("checksum mismatch"), "{r}");
    let r = reason(&text.replacen("de Simon 2.5", "de Simon x", 1));
    assert!(r.contains("hour 0: bad number"), "{r}");
    let r = reason(&text.replacen("de Simon 2.5", "de Simon -2.5", 1));
    assert!(r.contains("non-negative"), "{r}");
    let r = reason(&text.replacen("de Simon 2.5 ", "de Simon ", 1));
    assert!(r.contains("23 averages"), "{r}");
    let r = reason(&format!("{text}more\n"));
    assert!(r.contains("after the `end` line"), "{r}");
    let r = reason(&text.replacen("first-day 2016-08-01", "first-day 2016-13-01", 1));
    assert!(r.contains("bad date"), "{r}");
}

#[test]
fn a_file_without_line_breaks_fails_without_being_read_whole() {
    // An endless input: the reader must stop once a line is too long.
    let endless = std::io::BufReader::new(std::io::repeat(b'x'));
    let err = Reader::new(Path::new("big.bin"), endless)
        .read()
        .unwrap_err();
    let r = err.to_string();
    assert!(
        r.contains("line 1") && r.contains("more than 16777216 bytes"),
        "{r}"
    );
    let bytes: &[u8] = b"keyflow-baseline 1\n\xff\n";
    let err = Reader::new(Path::new("base.txt"), bytes)
        .read()
        .unwrap_err();
    assert!(err.to_string().contains("line 2: not UTF-8"), "{err}");
}

#[test]
fn rows_must_be_sorted_and_unique() {
    let text = sample().to_text();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(5, 6);
    let swapped = format!("{}\n", lines.join("\n"));
    assert!(reason(&swapped).contains("out of order"));
}

#[test]
fn writes_atomically_and_reads_back() {
    let dir = std::env::temp_dir().join(format!("keyflow-format-test-{}", std::process::id()));
    let path = dir.join("sub").join("base.txt");
    sample().write_atomic(&path).unwrap();
    assert_eq!(Baseline::read(&path).unwrap(), sample());
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    let mut bad = sample();
    bad.keys
        .insert(Article::named("en", "Bad"), [f64::NAN; HOURS]);
    assert!(bad.write_atomic(&path).is_err());
    assert_eq!(
        Baseline::read(&path).unwrap(),
        sample(),
        "a failed write keeps the old file"
    );
    let err = Baseline::read(&dir.join("missing"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_day_count_past_the_bound_is_refused() {
    // Folding a day into u64::MAX days would wrap the count to 0 and turn
    // every average into NaN. The header refuses it, so a checksum made
    // good does not let it through.
    let text = sample()
        .to_text()
        .replacen("days 3", "days 18446744073709551615", 1);
    let r = reason(&text);
    assert!(
        r.contains("days 18446744073709551615 is more than 4294967295"),
        "{r}"
    );
    let mut base = sample();
    base.days = MAX_DAYS + 1;
    assert!(base
        .validate()
        .unwrap_err()
        .to_string()
        .contains("more than"));
    base.days = MAX_DAYS;
    base.validate().unwrap();
}
