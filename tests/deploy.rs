//! The Kubernetes manifests: a headless Service and a StatefulSet of pods
//! that find each other by name, start together, keep checkpoints on a
//! volume, signal readiness, and accept mesh traffic only from each other.
//! The multi-host test runs exactly the command these manifests run.

mod deploy_support;

use deploy_support::*;

#[test]
fn the_kustomization_lists_every_manifest() {
    let k = manifest("kustomization.yaml");
    let listed = strings(&k["resources"]);
    for name in ["service.yaml", "statefulset.yaml", "networkpolicy.yaml"] {
        assert!(
            listed.contains(&name.to_string()),
            "{name} is not in kustomization.yaml"
        );
    }
    let generated = &k["configMapGenerator"][0];
    assert_eq!(generated["name"].as_str(), Some("keyflow-hosts"));
    assert_eq!(strings(&generated["files"]), ["hosts"]);
}

#[test]
fn pods_are_named_for_the_host_list_and_start_together() {
    let service = manifest("service.yaml");
    let set = manifest("statefulset.yaml");
    assert_eq!(
        service["spec"]["clusterIP"].as_str(),
        Some("None"),
        "headless"
    );
    assert_eq!(
        service["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    let name = set["metadata"]["name"].as_str().unwrap();
    let service_name = service["metadata"]["name"].as_str().unwrap();
    assert_eq!(set["spec"]["serviceName"].as_str(), Some(service_name));
    assert_eq!(
        set["spec"]["podManagementPolicy"].as_str(),
        Some("Parallel")
    );
    let replicas = set["spec"]["replicas"].as_i64().unwrap() as usize;
    let port = service["spec"]["ports"][0]["port"].as_i64().unwrap();
    let hosts = std::fs::read_to_string(k8s_dir().join("hosts")).unwrap();
    let expected: Vec<String> = (0..replicas)
        .map(|i| format!("{name}-{i}.{service_name}:{port}"))
        .collect();
    assert_eq!(hosts.lines().collect::<Vec<_>>(), expected);
    assert_eq!(
        container()["ports"][0]["containerPort"].as_i64(),
        Some(port)
    );
}

#[test]
fn the_pod_command_is_a_cluster_member_with_checkpoints_on_a_volume() {
    let command = pod_command();
    assert_eq!(command[0], "/usr/local/bin/keyflow");
    assert_eq!(flag_value(&command, "--process"), Some("auto"));
    assert_eq!(
        flag_value(&command, "--hostfile"),
        Some("/etc/keyflow/hosts")
    );
    let ready = flag_value(&command, "--ready-file").unwrap();
    let probe = strings(&container()["readinessProbe"]["exec"]["command"]);
    assert_eq!(probe, ["/usr/local/bin/keyflow", "ready", ready]);
    // Checkpoints on one claim that every pod mounts, read-write by many:
    // a volume per pod would leave every checkpoint incomplete.
    let checkpoints = flag_value(&command, "--checkpoint-dir").unwrap();
    let mounts = container()["volumeMounts"].as_vec().unwrap().clone();
    let mount = mounts
        .iter()
        .find(|m| checkpoints.starts_with(m["mountPath"].as_str().unwrap()))
        .expect("the checkpoint directory is on a mounted volume");
    let set = manifest("statefulset.yaml");
    let volume = set["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("a volume of the pod, not one per pod")
        .clone();
    let claim_name = volume["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap();
    let claim = manifest("checkpoints.yaml");
    assert_eq!(claim["kind"].as_str(), Some("PersistentVolumeClaim"));
    assert_eq!(claim["metadata"]["name"].as_str(), Some(claim_name));
    assert_eq!(strings(&claim["spec"]["accessModes"]), ["ReadWriteMany"]);
    let listed = strings(&manifest("kustomization.yaml")["resources"]);
    assert!(listed.contains(&"checkpoints.yaml".to_string()));
    let hosts = mounts
        .iter()
        .find(|m| m["name"].as_str() == Some("hosts"))
        .unwrap();
    assert_eq!(hosts["mountPath"].as_str(), Some("/etc/keyflow"));
    let requests = &container()["resources"]["requests"];
    assert!(requests["cpu"].as_str().is_some() && requests["memory"].as_str().is_some());
}

#[test]
fn the_pod_command_parses() {
    // The manifest's command is accepted by this build's flag parser: an
    // unknown or repeated flag would fail here rather than in a cluster.
    let command = pod_command();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyflow"))
        .args(&command[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn only_the_pods_reach_the_mesh_port() {
    let policy = manifest("networkpolicy.yaml");
    let spec = &policy["spec"];
    assert_eq!(
        spec["podSelector"]["matchLabels"]["app"].as_str(),
        Some("keyflow")
    );
    let rule = &spec["ingress"][0];
    assert_eq!(
        rule["from"][0]["podSelector"]["matchLabels"]["app"].as_str(),
        Some("keyflow")
    );
    assert_eq!(rule["ports"][0]["port"].as_i64(), Some(2101));
    assert_eq!(spec["ingress"].as_vec().unwrap().len(), 1);
}
