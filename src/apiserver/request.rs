//! Parse at the edge: an HTTP request becomes a typed [`Route`] plus [`Query`] and
//! [`Output`] before any handler logic runs.

use super::status::ApiError;
use crate::api::registry::{Registry, ResourceType, Subresource};
use http::Method;
use std::sync::Arc;

/// What a request addresses.
#[derive(Debug)]
pub enum Route {
    Version,
    Health,
    /// `/api` (core group discovery).
    CoreDiscovery,
    /// `/apis`.
    GroupsDiscovery,
    /// `/apis/<group>`.
    GroupDiscovery(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    ResourceList {
        group: String,
        version: String,
    },
    OpenApiV3Index,
    OpenApiV3Doc {
        group: String,
        version: String,
    },
    OpenApiV2,
    /// `/cacerts`: the cluster CA bundle, public (agents pin it by the token's hash).
    CaCerts,
    /// `/.well-known/openid-configuration`: service-account issuer discovery.
    OpenIdConfiguration,
    /// `/openid/v1/jwks`: the service-account signing key.
    OpenIdJwks,
    Resource(ResourceRequest),
}

/// The verb a resource request performs, as upstream's RequestInfo derives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ResourceRequest {
    pub rt: Arc<ResourceType>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
    pub verb: Verb,
}

/// Query parameters the handlers understand. Unknown parameters are ignored like upstream.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: bool,
    pub allow_watch_bookmarks: bool,
    pub send_initial_events: Option<bool>,
    pub timeout_seconds: Option<u64>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub field_manager: Option<String>,
    pub field_validation: crate::api::schema::FieldValidation,
    pub force: bool,
    pub dry_run: bool,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub container: Option<String>,
    pub follow: bool,
    pub tail_lines: Option<i64>,
}

fn parse_bool(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE")
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let mut q = Query::default();
        let Some(raw) = raw else { return Ok(q) };
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            let v = v.into_owned();
            let num = |name: &str, v: &str| -> Result<i64, ApiError> {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid value {v:?} for query parameter {name}"))
                })
            };
            match k.as_ref() {
                "labelSelector" if !v.is_empty() => q.label_selector = Some(v),
                "fieldSelector" if !v.is_empty() => q.field_selector = Some(v),
                "resourceVersion" if !v.is_empty() => q.resource_version = Some(v),
                "resourceVersionMatch" if !v.is_empty() => q.resource_version_match = Some(v),
                "watch" => q.watch = parse_bool(&v),
                "allowWatchBookmarks" => q.allow_watch_bookmarks = parse_bool(&v),
                "sendInitialEvents" => q.send_initial_events = Some(parse_bool(&v)),
                "timeoutSeconds" if !v.is_empty() => {
                    q.timeout_seconds = Some(num("timeoutSeconds", &v)?.max(0) as u64)
                }
                "limit" if !v.is_empty() => {
                    let n = num("limit", &v)?;
                    if n > 0 {
                        q.limit = Some(n as usize);
                    }
                }
                "continue" if !v.is_empty() => q.continue_token = Some(v),
                "fieldManager" if !v.is_empty() => q.field_manager = Some(v),
                "fieldValidation" => {
                    q.field_validation = crate::api::schema::FieldValidation::parse(Some(&v))
                        .map_err(|e| ApiError::bad_request(e.to_string()))?
                }
                "force" => q.force = parse_bool(&v),
                "dryRun" if !v.is_empty() => {
                    if v != "All" {
                        return Err(ApiError::bad_request(format!(
                            "Invalid dryRun value {v:?}: only \"All\" is supported"
                        )));
                    }
                    q.dry_run = true
                }
                "propagationPolicy" if !v.is_empty() => q.propagation_policy = Some(v),
                "gracePeriodSeconds" if !v.is_empty() => {
                    q.grace_period_seconds = Some(num("gracePeriodSeconds", &v)?)
                }
                "container" if !v.is_empty() => q.container = Some(v),
                "follow" => q.follow = parse_bool(&v),
                "tailLines" if !v.is_empty() => q.tail_lines = Some(num("tailLines", &v)?),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Which representation the client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    /// `application/vnd.kubernetes.protobuf`: built-in kinds only.
    Protobuf,
    /// `as=Table;g=meta.k8s.io;v=v1` (v1beta1 answered as v1, which clients accept).
    Table,
    /// `as=PartialObjectMetadata` / `PartialObjectMetadataList`.
    PartialMetadata,
    /// The same in protobuf (client-go's metadata informers ask for it first); every
    /// resource has it, custom ones included.
    PartialMetadataProtobuf,
}

const PROTOBUF: &str = crate::api::protobuf::CONTENT_TYPE;

/// Upstream's list for a built-in resource (JSON, YAML, protobuf; CBOR is off in v1.35).
const NOT_ACCEPTABLE: &str =
    "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// One media range of an `Accept` header.
struct Clause<'a> {
    media: String,
    q: f32,
    as_: Option<&'a str>,
    g: Option<&'a str>,
}

/// The media ranges of `accept`, most preferred first: by q-value, then concrete types
/// before wildcards, then in the order sent (upstream's goautoneg ordering). q=0 is "not
/// acceptable" and dropped.
fn clauses(accept: &str) -> Vec<Clause<'_>> {
    let mut out: Vec<Clause<'_>> = Vec::new();
    for part in accept.split(',') {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or_default().to_ascii_lowercase();
        let mut c = Clause {
            media,
            q: 1.0,
            as_: None,
            g: None,
        };
        for p in params {
            if let Some((k, v)) = p.split_once('=') {
                match k.trim() {
                    "as" => c.as_ = Some(v.trim()),
                    "g" => c.g = Some(v.trim()),
                    "q" => c.q = v.trim().parse().unwrap_or(1.0),
                    _ => {}
                }
            }
        }
        if c.q > 0.0 {
            out.push(c);
        }
    }
    let rank = |c: &Clause<'_>| {
        let (ty, sub) = c.media.split_once('/').unwrap_or((c.media.as_str(), ""));
        (
            std::cmp::Reverse((c.q * 1000.0) as u32),
            ty == "*",
            sub == "*",
        )
    };
    out.sort_by_key(rank);
    out
}

impl Output {
    /// Negotiates for a resource whose objects have a protobuf form (built-in kinds).
    pub fn negotiate(accept: Option<&str>) -> Result<Output, ApiError> {
        Output::negotiate_with(accept, true, false)
    }

    /// `protobuf`: whether the resource's objects can be encoded in protobuf. Custom
    /// resources cannot: a protobuf clause is skipped for the next acceptable one (upstream
    /// fails such requests even when JSON is offered too, kubernetes#86253), and when none
    /// is left the answer is upstream's 406 for an unstructured object.
    fn negotiate_with(
        accept: Option<&str>,
        protobuf: bool,
        list: bool,
    ) -> Result<Output, ApiError> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return Ok(Output::Json);
        };
        let mut wanted_protobuf = false;
        for c in clauses(accept) {
            let meta = c.g == Some("meta.k8s.io");
            match (c.media.as_str(), c.as_) {
                ("application/json", Some("Table")) if meta => return Ok(Output::Table),
                (
                    "application/json",
                    Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                ) if meta => return Ok(Output::PartialMetadata),
                ("application/json" | "application/yaml" | "*/*" | "application/*" | "", None)
                | ("*/*" | "application/*", _) => return Ok(Output::Json),
                (PROTOBUF, Some("PartialObjectMetadata" | "PartialObjectMetadataList")) if meta => {
                    return Ok(Output::PartialMetadataProtobuf)
                }
                (PROTOBUF, None) if protobuf => return Ok(Output::Protobuf),
                (PROTOBUF, None) => wanted_protobuf = true,
                // Table has no protobuf form upstream; other conversions are not served.
                _ => {}
            }
        }
        if wanted_protobuf {
            let ty = if list {
                "*unstructured.UnstructuredList"
            } else {
                "*unstructured.Unstructured"
            };
            return Err(ApiError::new(
                406,
                "NotAcceptable",
                format!("object {ty} does not implement the protobuf marshalling interface and cannot be encoded to a protobuf message"),
            ));
        }
        Err(ApiError::new(406, "NotAcceptable", NOT_ACCEPTABLE))
    }

    /// Negotiates the answer for one resource request. Upstream converts to a Table only
    /// through a resource's table convertor, which create-only resources (reviews, bindings)
    /// lack: asking them for a Table is 406 before the body is read.
    pub fn negotiate_for(accept: Option<&str>, rr: &ResourceRequest) -> Result<Output, ApiError> {
        let rt = &rr.rt;
        // Only looked up when asked for, keeping the JSON path free of it.
        let protobuf = accept.is_some_and(|a| a.contains("protobuf"))
            && rt.custom.is_none()
            && crate::api::protobuf::supports(&rt.api_version(), &rt.kind);
        let list = matches!(rr.verb, Verb::List | Verb::Watch | Verb::DeleteCollection);
        let output = Output::negotiate_with(accept, protobuf, list)?;
        if output == Output::Table && !rt.has_verb("get") {
            return Err(ApiError::new(406, "NotAcceptable", NOT_ACCEPTABLE));
        }
        Ok(output)
    }

    /// Whether a Status error for this request is written in protobuf: the client prefers
    /// protobuf to every other type the server offers (Status always has a protobuf form).
    pub fn status_in_protobuf(accept: Option<&str>) -> bool {
        matches!(Output::negotiate(accept), Ok(Output::Protobuf))
    }
}

/// Maps method + path to a route. `None` means the generic 404.
pub fn route(
    registry: &Registry,
    method: &Method,
    path: &str,
    query: &Query,
) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let route = match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz"] | ["livez"] | ["readyz"] => Route::Health,
        ["healthz" | "livez" | "readyz", _] => Route::Health,
        ["cacerts"] => Route::CaCerts,
        [".well-known", "openid-configuration"] => Route::OpenIdConfiguration,
        ["openid", "v1", "jwks"] => Route::OpenIdJwks,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", "api", v] => Route::OpenApiV3Doc {
            group: String::new(),
            version: v.to_string(),
        },
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3Doc {
            group: g.to_string(),
            version: v.to_string(),
        },
        ["api"] => Route::CoreDiscovery,
        ["apis"] => Route::GroupsDiscovery,
        ["apis", g] => Route::GroupDiscovery(g.to_string()),
        ["api", v] => Route::ResourceList {
            group: String::new(),
            version: v.to_string(),
        },
        ["apis", g, v] => Route::ResourceList {
            group: g.to_string(),
            version: v.to_string(),
        },
        ["api", v, rest @ ..] => resource_route(registry, method, "", v, rest, query)?,
        ["apis", g, v, rest @ ..] => resource_route(registry, method, g, v, rest, query)?,
        _ => return Err(ApiError::no_route()),
    };
    if !matches!(route, Route::Resource(_)) && *method != Method::GET && *method != Method::HEAD {
        return Err(ApiError::method_not_allowed());
    }
    Ok(route)
}

fn resource_route(
    registry: &Registry,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &Query,
) -> Result<Route, ApiError> {
    // namespaces/<ns>/<resource>... addresses a namespaced resource, unless it is one of the
    // namespace's own subresources (namespaces/<name>/status).
    let (namespace, rest): (Option<String>, &[&str]) = match rest {
        ["namespaces", ns, r, tail @ ..]
            if !(group.is_empty() && Subresource::parse(r).is_some() && tail.is_empty()) =>
        {
            (Some(ns.to_string()), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s] => (*r, Some(n.to_string()), Some(*s)),
        // `{nodes,pods,services}/<name>/proxy/<path>`: the handler reads the path suffix from
        // the URI.
        [r, n, "proxy", ..] => (*r, Some(n.to_string()), Some("proxy")),
        _ => return Err(ApiError::no_route()),
    };
    let rt = registry
        .lookup(group, version, plural)
        .ok_or_else(ApiError::no_route)?;
    if namespace.is_some() && !rt.namespaced {
        return Err(ApiError::no_route());
    }
    let subresource = match sub {
        None => None,
        Some(s) => match Subresource::parse(s) {
            Some(sr) if rt.has_subresource(sr) => Some(sr),
            _ => return Err(ApiError::no_route()),
        },
    };
    let verb = match (method.as_str(), name.is_some()) {
        // A proxied OPTIONS is authorized with no verb (only `*` rules allow it, as
        // upstream); it is handled as a read.
        ("OPTIONS", true) if subresource == Some(Subresource::Proxy) => Verb::Get,
        ("GET" | "HEAD", true) if query.watch => Verb::Watch,
        ("GET" | "HEAD", true) => Verb::Get,
        ("GET" | "HEAD", false) if query.watch => Verb::Watch,
        ("GET" | "HEAD", false) => Verb::List,
        ("POST", false) => Verb::Create,
        // POST on a named object is only meaningful for create-style subresources.
        ("POST", true)
            if matches!(
                subresource,
                Some(
                    Subresource::Binding
                        | Subresource::Eviction
                        | Subresource::Token
                        | Subresource::Exec
                        | Subresource::Attach
                        | Subresource::PortForward
                        | Subresource::Proxy
                )
            ) =>
        {
            Verb::Create
        }
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => return Err(ApiError::method_not_allowed()),
    };
    let verb_name = if subresource.is_some() {
        None
    } else {
        Some(verb.as_str())
    };
    if let Some(v) = verb_name {
        // A watch on a named object is a filtered list watch upstream.
        if !rt.has_verb(v) {
            return Err(ApiError::method_not_allowed());
        }
    }
    Ok(Route::Resource(ResourceRequest {
        rt,
        namespace,
        name,
        subresource,
        verb,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, path: &str) -> Result<Route, ApiError> {
        let reg = Registry::new();
        route(&reg, &method, path, &Query::default())
    }

    #[test]
    fn namespaced_paths_resolve_to_resource_requests() {
        match r(
            Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
        )
        .unwrap()
        {
            Route::Resource(rr) => {
                assert_eq!(rr.rt.plural, "deployments");
                assert_eq!(rr.namespace.as_deref(), Some("default"));
                assert_eq!(rr.name.as_deref(), Some("web"));
                assert_eq!(rr.subresource, Some(Subresource::Scale));
                assert_eq!(rr.verb, Verb::Get);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn namespace_status_is_a_namespace_subresource() {
        match r(Method::PUT, "/api/v1/namespaces/foo/status").unwrap() {
            Route::Resource(rr) => {
                assert_eq!(rr.rt.plural, "namespaces");
                assert_eq!(rr.name.as_deref(), Some("foo"));
                assert_eq!(rr.subresource, Some(Subresource::Status));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_resources_get_the_generic_not_found() {
        let e = r(Method::GET, "/api/v1/namespaces/default/foos").unwrap_err();
        assert_eq!(e.code, 404);
        assert_eq!(
            e.message,
            "the server could not find the requested resource"
        );
    }

    #[test]
    fn table_accept_header_is_recognised() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(Output::negotiate(Some(a)).unwrap(), Output::Table);
        assert_eq!(
            Output::negotiate(Some("application/vnd.kubernetes.protobuf,application/json"))
                .unwrap(),
            Output::Protobuf
        );
    }

    #[test]
    fn accept_is_honoured_by_q_value_then_specificity_then_order() {
        let n = |a: &str| Output::negotiate(Some(a)).map_err(|e| e.message);
        assert_eq!(
            n("application/json, application/vnd.kubernetes.protobuf"),
            Ok(Output::Json)
        );
        assert_eq!(
            n("application/json;q=0.5, application/vnd.kubernetes.protobuf"),
            Ok(Output::Protobuf)
        );
        assert_eq!(
            n("*/*, application/vnd.kubernetes.protobuf"),
            Ok(Output::Protobuf)
        );
        assert_eq!(
            n("application/vnd.kubernetes.protobuf;q=0, application/json"),
            Ok(Output::Json)
        );
        assert_eq!(n(""), Ok(Output::Json));
        // Table has no protobuf form: the next clause answers.
        assert_eq!(
            n("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, application/json"),
            Ok(Output::Json)
        );
        assert_eq!(n("text/html"), Err(NOT_ACCEPTABLE.to_owned()));
        // client-go's metadata client.
        assert_eq!(
            n("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"),
            Ok(Output::PartialMetadataProtobuf)
        );
    }

    #[test]
    fn custom_resources_fall_back_to_json_or_get_upstreams_406() {
        let n = |a: &str, list| Output::negotiate_with(Some(a), false, list);
        assert_eq!(
            n(
                "application/vnd.kubernetes.protobuf, application/json",
                false
            )
            .unwrap(),
            Output::Json
        );
        let e = n("application/vnd.kubernetes.protobuf", true).unwrap_err();
        assert_eq!((e.code, e.reason), (406, "NotAcceptable"));
        assert_eq!(
            e.message,
            "object *unstructured.UnstructuredList does not implement the protobuf marshalling interface and cannot be encoded to a protobuf message"
        );
        assert!(Output::status_in_protobuf(Some(
            "application/vnd.kubernetes.protobuf"
        )));
        assert!(!Output::status_in_protobuf(Some(
            "application/json, application/vnd.kubernetes.protobuf"
        )));
    }

    #[test]
    fn kube_rs_style_empty_parameters_are_tolerated() {
        let q = Query::parse(Some("&fieldManager=x&&watch=true")).unwrap();
        assert!(q.watch);
        assert_eq!(q.field_manager.as_deref(), Some("x"));
    }
}
