//! networking.k8s.io (Ingresses, IngressClasses, NetworkPolicies) and discovery.k8s.io
//! EndpointSlices: defaults and printers.

use super::{Printing, Strategy};
use crate::api::defaults::groups;
use crate::api::table::printers;

pub static INGRESS: Strategy = Strategy {
    kind: "Ingress",
    printer: Printing::Builtin(&printers::INGRESS),
    ..Strategy::GENERIC
};

pub static INGRESS_CLASS: Strategy = Strategy {
    kind: "IngressClass",
    defaults: groups::ingress_class,
    printer: Printing::Builtin(&printers::INGRESS_CLASS),
    ..Strategy::GENERIC
};

pub static NETWORK_POLICY: Strategy = Strategy {
    kind: "NetworkPolicy",
    defaults: groups::network_policy,
    printer: Printing::Builtin(&printers::NETWORK_POLICY),
    ..Strategy::GENERIC
};

pub static ENDPOINT_SLICE: Strategy = Strategy {
    kind: "EndpointSlice",
    defaults: groups::endpoint_slice,
    printer: Printing::Builtin(&printers::ENDPOINT_SLICE),
    ..Strategy::GENERIC
};
