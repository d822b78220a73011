//! A strict parser of Prometheus' text exposition format (version 0.0.4),
//! as far as keyflow uses it: `# HELP` and `# TYPE` lines, samples with
//! optional labels, float values. Anything else is an error.

use std::collections::{BTreeMap, BTreeSet};

/// One sample: its metric name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// Label names to values, unescaped.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A parsed exposition: the type of each family and every sample.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name to its type (`counter`, `gauge`, ..).
    pub types: BTreeMap<String, String>,
    /// The samples, in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The samples of family `name`.
    pub fn family(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The value of `name` with label `step` = `step`.
    pub fn step(&self, name: &str, step: &str) -> Option<f64> {
        self.family(name)
            .into_iter()
            .find(|s| s.labels.get("step").map(String::as_str) == Some(step))
            .map(|s| s.value)
    }
}

fn metric_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn label_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("bad value {text:?}")),
    }
}

/// Parses `{a="x",b="y"}` at the start of `text`; returns the labels and
/// the rest.
fn labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut out = BTreeMap::new();
    let mut rest = text.strip_prefix('{').ok_or("labels must start with {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((out, after));
        }
        let (name, after) = rest.split_once("=\"").ok_or("a label needs =\"")?;
        if !label_name_ok(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in label {name}")),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) | None => return Err(format!("label {name} is not closed")),
                Some((_, c)) => value.push(c),
            }
        };
        if out.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &after[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("labels must be separated by ,".into());
        }
    }
}

/// Parses `text`, or says what is wrong and on which line.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let known = ["counter", "gauge", "histogram", "summary", "untyped"];
    let mut exp = Exposition::default();
    let mut series = BTreeSet::new();
    // Families whose samples have ended: one may not come back.
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    if !text.ends_with('\n') {
        return Err("the exposition must end with a line break".into());
    }
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !metric_name_ok(name) || !known.contains(&kind) {
                        return Err(at("bad TYPE line".into()));
                    }
                    if exp
                        .types
                        .insert(name.to_string(), kind.to_string())
                        .is_some()
                    {
                        return Err(at(format!("second TYPE for {name}")));
                    }
                    if exp.samples.iter().any(|s| s.name == name) {
                        return Err(at(format!("TYPE for {name} after its samples")));
                    }
                }
                (Some("HELP"), Some(name), _) if !metric_name_ok(name) => {
                    return Err(at("bad HELP line".into()));
                }
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !metric_name_ok(name) {
            return Err(at(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("a space must come before the value".into()))?
            .split(' ');
        let v = value(fields.next().unwrap_or_default()).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| at(format!("bad timestamp {ts:?}")))?;
        }
        if fields.next().is_some() {
            return Err(at("text after the timestamp".into()));
        }
        if !exp.types.contains_key(name) {
            return Err(at(format!("sample of {name} before its TYPE line")));
        }
        if current.as_deref() != Some(name) {
            if closed.contains(name) {
                return Err(at(format!("samples of {name} are not together")));
            }
            if let Some(previous) = current.replace(name.to_string()) {
                closed.insert(previous);
            }
        }
        let key = format!("{name}{labels:?}");
        if !series.insert(key) {
            return Err(at("the same series twice".into()));
        }
        // NaN is no count either.
        if exp.types[name] == "counter" && (v.is_nan() || v < 0.0) {
            return Err(at("a counter below zero".into()));
        }
        exp.samples.push(Sample {
            name: name.to_string(),
            labels,
            value: v,
        });
    }
    Ok(exp)
}

#[test]
fn the_parser_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{step=\"x\\\"y\"} 3\na_total{step=\"z\"} 4\n# TYPE g gauge\ng NaN\n";
    let exp = parse(good).unwrap();
    assert_eq!(exp.step("a_total", "x\"y"), Some(3.0));
    assert!(exp.family("g")[0].value.is_nan());
    for bad in [
        "a 1\n",                                                      // no TYPE
        "# TYPE a counter\na{step=\"x} 1\n",                          // unclosed label
        "# TYPE a counter\na 1\na 2\n",                               // same series twice
        "# TYPE a counter\na -1\n",                                   // negative counter
        "# TYPE a counter\na one\n",                                  // bad value
        "# TYPE a counter\n# TYPE b gauge\na 1\nb 1\na{x=\"1\"} 1\n", // split family
        "# TYPE a counter\na 1",                                      // no final line break
        "# TYPE a counter\na{0x=\"1\"} 1\n",                          // bad label name
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}
