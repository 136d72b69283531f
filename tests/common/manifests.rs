//! Manifests the end-to-end tests apply, written as a user would (no server-set fields).
//! Invariant: every name here is unique within its namespace, so tests can combine them.

/// A namespace with one object of each common kind, as a multi-document file.
/// `greeting`, `image` and `replicas` vary between apply rounds.
pub fn app(greeting: &str, image: &str, replicas: u32, extra_cm_label: bool) -> String {
    let extra = if extra_cm_label {
        "\n    stage: beta"
    } else {
        ""
    };
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  namespace: demo
  labels:
    app: web{extra}
data:
  greeting: {greeting}
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
  namespace: demo
type: Opaque
data:
  password: czNjcmV0
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: {image}
        ports:
        - containerPort: 8080
"#
    )
}

/// The Widget CRD (example.com/v1, short name `wd`) with printer columns, one at priority 1.
pub const WIDGET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names:
    plural: widgets
    singular: widget
    kind: Widget
    listKind: WidgetList
    shortNames:
    - wd
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
              color:
                type: string
              shape:
                type: string
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Shape
      type: string
      jsonPath: .spec.shape
      priority: 1
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
"#;

/// A Widget custom resource.
pub fn widget(name: &str, namespace: &str, size: u32, color: &str) -> String {
    format!(
        r#"apiVersion: example.com/v1
kind: Widget
metadata:
  name: {name}
  namespace: {namespace}
spec:
  size: {size}
  color: {color}
  shape: round
"#
    )
}

/// A ConfigMap with labels given as `key: value` pairs.
pub fn configmap(name: &str, namespace: &str, labels: &[(&str, &str)]) -> String {
    let mut labels_yaml = String::new();
    if !labels.is_empty() {
        labels_yaml.push_str("\n  labels:");
        for (k, v) in labels {
            labels_yaml.push_str(&format!("\n    {k}: {v}"));
        }
    }
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: {namespace}{labels_yaml}
data:
  key: value
"#
    )
}

/// A Deployment with two containers (`web` with a port, and `sidecar`) for patch tests.
pub fn two_container_deployment(name: &str, namespace: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
  labels:
    app: {name}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 8080
      - name: sidecar
        image: busybox:1.36
        command: ["sleep", "infinity"]
"#
    )
}
