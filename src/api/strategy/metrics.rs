//! `metrics.k8s.io/v1beta1` NodeMetrics and PodMetrics: computed at each read from the
//! kubelets' stats (`apiserver::metrics`), never stored (what metrics-server serves).

use super::Strategy;

pub static NODE_METRICS: Strategy = Strategy {
    kind: "NodeMetrics",
    storage: super::Storage::Live,
    ..Strategy::GENERIC
};

pub static POD_METRICS: Strategy = Strategy {
    kind: "PodMetrics",
    storage: super::Storage::Live,
    ..Strategy::GENERIC
};
