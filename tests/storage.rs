//! PersistentVolume binding and the local-path provisioner through the real binary and
//! kubectl: the default `local-path` class (WaitForFirstConsumer) leaves a claim Pending
//! until a pod uses it, the scheduler selects the pod's node for the claim, the provisioner
//! makes a volume pinned to that node, the node makes the directory under the server's data
//! dir, later pods of the claim go to that node, growing the claim is refused, and deleting
//! the claim deletes the volume and its directory. A claim a running pod uses, and the
//! volume bound to it, are protected by finalizers: deleting the claim waits for the pod.

mod common;

use common::process::eventually;
use common::sim_nodes::TestSimNodes;
use common::TestServer;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(45);

const CLAIM: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
";

fn claim(server: &TestServer) -> Value {
    server.kubectl_json(&["get", "pvc", "data", "-o", "json"])
}

/// The bound volume's name and directory once the claim is Bound.
fn bound_volume(server: &TestServer) -> (String, PathBuf) {
    let pv = eventually(WAIT, "the claim is Bound", || {
        let c = claim(server);
        (c["status"]["phase"] == "Bound")
            .then(|| {
                c["spec"]["volumeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .ok_or_else(|| c.to_string())
    });
    let v = server.kubectl_json(&["get", "pv", &pv, "-o", "json"]);
    let dir = PathBuf::from(v["spec"]["hostPath"]["path"].as_str().expect("a hostPath"));
    assert_eq!(
        dir,
        server
            .data_dir()
            .join("storage")
            .join(format!("{pv}_default_data"))
    );
    (pv, dir)
}

fn volume_node(server: &TestServer, pv: &str) -> String {
    let v = server.kubectl_json(&["get", "pv", pv, "-o", "json"]);
    let expr =
        &v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0];
    assert_eq!(expr["key"], "kubernetes.io/hostname", "{v}");
    expr["values"][0].as_str().unwrap_or_default().to_owned()
}

fn pod_using_claim(name: &str, image: &str, command: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    command: [sh, -c, '{command}']
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: data}}
"
    )
}

fn running_on(server: &TestServer, pod: &str) -> String {
    eventually(WAIT, &format!("pod {pod} Running"), || {
        let p = server.kubectl_json(&["get", "pod", pod, "-o", "json"]);
        (p["status"]["phase"] == "Running")
            .then(|| {
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .ok_or_else(|| p["status"].to_string())
    })
}

/// Deleting the pod and the claim deletes the volume, and its directory before it.
fn delete_claim_and_expect_volume_gone(
    server: &TestServer,
    pods: &[&str],
    pv: &str,
    dir: &std::path::Path,
) {
    for p in pods {
        server.kubectl_ok(&["delete", "pod", p, "--timeout=30s"]);
    }
    server.kubectl_ok(&[
        "delete",
        "pvc",
        "data",
        "--timeout=30s",
        "--ignore-not-found",
    ]);
    eventually(WAIT, "the volume is deleted", || {
        let r = server.kubectl(&["get", "pv", pv]);
        (!r.success()).then_some(()).ok_or_else(|| r.output())
    });
    assert!(!dir.exists(), "{} outlived its volume", dir.display());
}

/// Simulated nodes sim-0, sim-1 and sim-2, once Ready.
fn three_ready_sim_nodes(server: &TestServer) -> TestSimNodes {
    let mut sims = TestSimNodes::start(server, 3, &[]);
    for n in ["sim-0", "sim-1", "sim-2"] {
        eventually(WAIT, &format!("node {n} Ready"), || {
            sims.check_running();
            common::agent::node_ready(server, n)
                .then_some(())
                .ok_or_else(|| server.kubectl(&["get", "nodes"]).output())
        });
    }
    sims
}

#[test]
fn a_local_path_claim_is_provisioned_on_its_first_pods_node_and_pins_later_pods_there() {
    let server = TestServer::start();
    let _sims = three_ready_sim_nodes(&server);
    // The default class, as k3s ships it.
    let sc = server.kubectl_ok(&["get", "storageclass"]);
    let row = sc
        .lines()
        .find(|l| l.starts_with("local-path"))
        .unwrap_or_default();
    for col in [
        "(default)",
        "rancher.io/local-path",
        "Delete",
        "WaitForFirstConsumer",
    ] {
        assert!(row.contains(col), "{sc}");
    }

    // No class named: the default one is filled in, and the claim waits for a consumer.
    server.apply("claim.yaml", CLAIM);
    assert_eq!(claim(&server)["spec"]["storageClassName"], "local-path");
    eventually(WAIT, "the WaitForFirstConsumer event", || {
        let ev = server.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=data",
        ]);
        ev.contains("waiting for first consumer to be created before binding")
            .then_some(())
            .ok_or(ev)
    });
    assert_eq!(claim(&server)["status"]["phase"], "Pending");

    let image = "registry.example/never-pulled:1.0";
    server.apply("first.yaml", &pod_using_claim("first", image, "sleep 3600"));
    let node = running_on(&server, "first");
    let (pv, dir) = bound_volume(&server);
    let c = claim(&server);
    assert_eq!(
        c["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        node.as_str()
    );
    assert_eq!(volume_node(&server, &pv), node);
    assert!(dir.is_dir(), "{} was not made by the node", dir.display());

    // A later pod of the claim goes where the volume is.
    server.kubectl_ok(&["delete", "pod", "first", "--timeout=30s"]);
    server.apply(
        "second.yaml",
        &pod_using_claim("second", image, "sleep 3600"),
    );
    assert_eq!(running_on(&server, "second"), node);

    // Growing it is refused: the class does not allow expansion.
    let grow = server.kubectl(&[
        "patch",
        "pvc",
        "data",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    assert!(!grow.success());
    assert!(
        grow.stderr.contains(
            "only dynamically provisioned pvc can be resized and the storageclass that provisions \
             the pvc must support resize"
        ),
        "{grow}"
    );

    delete_claim_and_expect_volume_gone(&server, &["second"], &pv, &dir);
}

/// A StorageClass binding at the first consumer, with `extra` YAML lines.
fn first_consumer_class(name: &str, provisioner: &str, extra: &str) -> String {
    format!(
        "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: {name}}}
provisioner: {provisioner}
volumeBindingMode: WaitForFirstConsumer
{extra}"
    )
}

/// A class of the local-path provisioner that allows expansion: growing a bound claim with
/// kubectl grows its volume and the claim's capacity (a directory has no size to change on
/// the node).
#[test]
fn a_claim_in_a_class_that_allows_expansion_grows_with_kubectl_patch() {
    let server = TestServer::start();
    let _sims = three_ready_sim_nodes(&server);
    server.apply(
        "class.yaml",
        &first_consumer_class(
            "growing",
            "rancher.io/local-path",
            "allowVolumeExpansion: true\n",
        ),
    );
    server.apply(
        "claim.yaml",
        &CLAIM.replace("spec:\n", "spec:\n  storageClassName: growing\n"),
    );
    let image = "registry.example/never-pulled:1.0";
    server.apply("user.yaml", &pod_using_claim("user", image, "sleep 3600"));
    running_on(&server, "user");
    let (pv, dir) = bound_volume(&server);
    server.kubectl_ok(&[
        "patch",
        "pvc",
        "data",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}"#,
    ]);
    eventually(WAIT, "the claim's capacity is 3Gi", || {
        let c = claim(&server);
        (c["status"]["capacity"]["storage"] == "3Gi")
            .then_some(())
            .ok_or_else(|| c["status"].to_string())
    });
    let v = server.kubectl_json(&["get", "pv", &pv, "-o", "json"]);
    assert_eq!(v["spec"]["capacity"]["storage"], "3Gi", "{v}");
    // Events are recorded in the background, after the writes they tell of.
    eventually(WAIT, "a VolumeResizeSuccessful event", || {
        let described = server.kubectl_ok(&["describe", "pvc", "data"]);
        described
            .contains("VolumeResizeSuccessful")
            .then_some(())
            .ok_or(described)
    });
    delete_claim_and_expect_volume_gone(&server, &["user"], &pv, &dir);
}

/// A local volume made by hand on `node` at `disks/<name>` (class `local-storage`, no
/// provisioner).
fn local_volume(name: &str, node: &str, disks: &std::path::Path) -> String {
    let path = disks.join(name);
    std::fs::create_dir_all(&path).expect("the volume's directory");
    let path = path.display();
    format!(
        "apiVersion: v1
kind: PersistentVolume
metadata: {{name: {name}}}
spec:
  capacity: {{storage: 2Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-storage
  local: {{path: {path}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {{key: kubernetes.io/hostname, operator: In, values: [{node}]}}
"
    )
}

/// The bare-metal setup of volumes made by hand: local PersistentVolumes of a class without
/// provisioner that binds at the first consumer. The scheduler sends a claim's first pod to
/// the node of an Available volume that fits it and pre-binds that volume, and the binder
/// completes the claim; with no volume left for a claim, its pod waits with upstream's
/// reason until one is added.
#[test]
fn claims_on_hand_made_local_volumes_send_their_pods_to_the_volumes_node() {
    let server = TestServer::start();
    let _sims = three_ready_sim_nodes(&server);
    server.apply(
        "class.yaml",
        &first_consumer_class("local-storage", "kubernetes.io/no-provisioner", ""),
    );
    let disks = tempfile::tempdir().expect("a dir for the disks");
    server.apply(
        "disk-1.yaml",
        &local_volume("disk-1", "sim-1", disks.path()),
    );
    let claim_named = |name: &str| {
        format!(
            "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}}}
spec:
  storageClassName: local-storage
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
"
        )
    };
    let image = "registry.example/never-pulled:1.0";
    let pod_on = |pod: &str, claim: &str| {
        pod_using_claim(pod, image, "sleep 3600")
            .replace("claimName: data", &format!("claimName: {claim}"))
    };
    server.apply("data.yaml", &claim_named("data"));
    server.apply("first.yaml", &pod_on("first", "data"));
    assert_eq!(running_on(&server, "first"), "sim-1");
    let c = claim(&server);
    assert_eq!(c["status"]["phase"], "Bound", "{c}");
    assert_eq!(c["spec"]["volumeName"], "disk-1", "{c}");
    let v = server.kubectl_json(&["get", "pv", "disk-1", "-o", "json"]);
    assert_eq!(v["spec"]["claimRef"]["name"], "data", "{v}");
    assert_eq!(v["spec"]["claimRef"]["uid"], c["metadata"]["uid"], "{v}");
    assert_eq!(v["status"]["phase"], "Bound", "{v}");
    assert!(
        c["metadata"]["annotations"]["volume.kubernetes.io/selected-node"].is_null(),
        "nothing to provision: {c}"
    );

    // disk-1 is taken: a second claim's pod fits no node until a volume is added.
    server.apply("more.yaml", &claim_named("more"));
    server.apply("second.yaml", &pod_on("second", "more"));
    eventually(WAIT, "FailedScheduling for the missing volume", || {
        let ev = server.event_messages(
            "default",
            "involvedObject.name=second,reason=FailedScheduling",
        );
        ev.contains(
            "0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind.",
        )
        .then_some(())
        .ok_or(ev)
    });
    server.apply(
        "disk-2.yaml",
        &local_volume("disk-2", "sim-2", disks.path()),
    );
    assert_eq!(running_on(&server, "second"), "sim-2");
    let more = server.kubectl_json(&["get", "pvc", "more", "-o", "json"]);
    assert_eq!(more["spec"]["volumeName"], "disk-2", "{more}");

    for p in ["first", "second"] {
        server.kubectl_ok(&["delete", "pod", p, "--timeout=30s"]);
    }
    server.kubectl_ok(&["delete", "pvc", "data", "more", "--timeout=30s"]);
    // Retain: the volumes stay, Released.
    for v in ["disk-1", "disk-2"] {
        eventually(WAIT, &format!("{v} Released"), || {
            let pv = server.kubectl_json(&["get", "pv", v, "-o", "json"]);
            (pv["status"]["phase"] == "Released")
                .then_some(())
                .ok_or_else(|| pv["status"].to_string())
        });
    }
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts, cgroups and links"
)]
fn a_pod_writes_into_its_local_path_claim_on_the_host_and_the_directory_goes_with_the_claim() {
    use common::registry::{self, Registry};
    let reg = Registry::start();
    let layout = tempfile::tempdir().expect("layout dir");
    registry::build_busybox_layout(layout.path(), "t");
    reg.push(layout.path(), "t", "test/busybox:1");
    let image = format!("{}/test/busybox:1", reg.host());
    let server = TestServer::start_with_agent_and(&["--node-name", "n1"]);
    common::agent::wait_node_ready(&server, "n1", Duration::from_secs(30), || {});

    server.apply("claim.yaml", CLAIM);
    server.apply(
        "writer.yaml",
        &pod_using_claim("writer", &image, "echo kept > /data/file; exec sleep 3600"),
    );
    assert_eq!(running_on(&server, "writer"), "n1");
    let (pv, dir) = bound_volume(&server);
    let file = dir.join("file");
    eventually(WAIT, "the file is on the host", || {
        std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|s| (s == "kept\n").then_some(()).ok_or(s))
    });

    // Protection: the claim under a running pod, and the volume bound to it, carry their
    // finalizers; deleting the claim leaves it Terminating and the data in place until the
    // pod is gone.
    let finalizers = |kind: &str, name: &str| {
        server.kubectl_json(&["get", kind, name, "-o", "json"])["metadata"]["finalizers"].clone()
    };
    assert_eq!(
        finalizers("pvc", "data"),
        serde_json::json!(["kubernetes.io/pvc-protection"])
    );
    assert!(
        finalizers("pv", &pv)
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "kubernetes.io/pv-protection")),
        "{}",
        finalizers("pv", &pv)
    );
    server.kubectl_ok(&["delete", "pvc", "data", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(2));
    let c = claim(&server);
    assert!(c["metadata"]["deletionTimestamp"].is_string(), "{c}");
    assert_eq!(c["status"]["phase"], "Bound", "{c}");
    let described = server.kubectl_ok(&["describe", "pvc", "data"]);
    assert!(described.contains("Terminating"), "{described}");
    assert_eq!(
        std::fs::read_to_string(&file).ok().as_deref(),
        Some("kept\n")
    );
    assert!(server.kubectl(&["get", "pv", &pv]).success());
    delete_claim_and_expect_volume_gone(&server, &["writer"], &pv, &dir);
}

/// A VolumeAttributesClass in use is protected like a claim: it gets the
/// `kubernetes.io/vac-protection` finalizer, deleting it while a claim names it leaves it
/// Terminating, and it goes once the claim does.
#[test]
fn a_volume_attributes_class_a_claim_names_outlives_its_deletion_until_the_claim_goes() {
    let server = TestServer::start();
    server.apply(
        "vac.yaml",
        concat!(
            "apiVersion: storage.k8s.io/v1\nkind: VolumeAttributesClass\n",
            "metadata:\n  name: gold\ndriverName: csi.example.com\n",
            "parameters:\n  iops: \"3000\"\n",
        ),
    );
    eventually(WAIT, "the class gets the protection finalizer", || {
        let f = server.kubectl_ok(&[
            "get",
            "vac",
            "gold",
            "-o",
            "jsonpath={.metadata.finalizers}",
        ]);
        f.contains("kubernetes.io/vac-protection")
            .then_some(())
            .ok_or(f)
    });
    server.apply(
        "pvc.yaml",
        concat!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: fast\n",
            "spec:\n  accessModes: [ReadWriteOnce]\n  volumeAttributesClassName: gold\n",
            "  resources:\n    requests:\n      storage: 1Gi\n",
        ),
    );
    server.kubectl_ok(&["delete", "vac", "gold", "--wait=false"]);
    // Still there, Terminating, while the claim names it.
    std::thread::sleep(Duration::from_secs(1));
    let deleting = server.kubectl_ok(&[
        "get",
        "vac",
        "gold",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(
        !deleting.trim().is_empty(),
        "the class is not being deleted"
    );
    server.kubectl_ok(&["delete", "pvc", "fast", "--timeout=30s"]);
    eventually(WAIT, "the class goes with its last claim", || {
        let r = server.kubectl(&["get", "vac", "gold"]);
        (!r.success()).then_some(()).ok_or_else(|| r.output())
    });
}
