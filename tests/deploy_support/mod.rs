//! The Kubernetes manifests in `deploy/k8s`, read as the deployment and
//! multi-host tests need them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

pub fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s")
}

/// The one document in `deploy/k8s/NAME`.
pub fn manifest(name: &str) -> Yaml {
    let path = k8s_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(docs.len(), 1, "{name} holds one document");
    docs.remove(0)
}

pub fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec()
        .unwrap_or_else(|| panic!("not a list: {list:?}"))
        .iter()
        .map(|v| match v {
            Yaml::String(s) => s.clone(),
            Yaml::Integer(i) => i.to_string(),
            other => panic!("not a string: {other:?}"),
        })
        .collect()
}

/// The StatefulSet's container.
pub fn container() -> Yaml {
    let set = manifest("statefulset.yaml");
    set["spec"]["template"]["spec"]["containers"][0].clone()
}

/// The command every pod runs: the container's command, then its args.
pub fn pod_command() -> Vec<String> {
    let c = container();
    let mut all = strings(&c["command"]);
    all.extend(strings(&c["args"]));
    all
}

/// The value after `flag` in `command`.
pub fn flag_value<'a>(command: &'a [String], flag: &str) -> Option<&'a str> {
    command
        .iter()
        .position(|a| a == flag)
        .and_then(|i| command.get(i + 1))
        .map(String::as_str)
}

/// `command` with `flag`'s value replaced, or the flag and its value
/// removed when `value` is `None`.
pub fn with_flag(command: &[String], flag: &str, value: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = command.iter();
    while let Some(arg) = args.next() {
        if arg == flag {
            args.next();
            if let Some(v) = value {
                out.push(flag.to_string());
                out.push(v.to_string());
            }
        } else {
            out.push(arg.clone());
        }
    }
    out
}
