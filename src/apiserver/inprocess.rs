//! The in-process transport: a `tower::Service` that hands requests straight to the API
//! handlers (no socket, no TLS, no serialisation of the connection), with the caller's
//! identity fixed when the client is made.
//!
//! Invariants:
//! - Only authentication is skipped. Authorization, admission, defaulting, validation,
//!   watch limits and error Statuses are exactly those an HTTPS caller with the same
//!   identity gets, because the request enters the same `handle` function.
//! - Objects come back without `metadata.managedFields` (objects, lists, watch events): no
//!   in-process component reads them, and decoding them was most of what decoding a pod
//!   cost. Writing such an object back keeps the stored managed fields, as upstream does
//!   for a body without them.

use super::response::Body;
use super::{handle, ApiState, BoxError, ConnInfo, UserInfo};
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A `tower::Service` over the API handlers for one fixed identity.
#[derive(Clone)]
pub struct InProcessService {
    state: Arc<ApiState>,
    conn: Arc<ConnInfo>,
}

impl InProcessService {
    pub fn new(state: Arc<ApiState>, user: UserInfo) -> InProcessService {
        InProcessService {
            state,
            conn: Arc::new(ConnInfo {
                peer: None,
                cert_user: Some(super::authn::authenticated(user)),
            }),
        }
    }

    /// A `kube::Client` acting as this service's identity; `default` is its default
    /// namespace.
    pub fn into_client(self) -> kube::Client {
        kube::Client::new(self, "default")
    }
}

impl<B> tower::Service<Request<B>> for InProcessService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = self.state.clone();
        let conn = self.conn.clone();
        Box::pin(async move {
            let resp = handle(state, conn, req).await;
            let json = resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/json"));
            if !json {
                return Ok(resp);
            }
            // Each JSON body and each watch event is one frame: a whole document.
            Ok(resp.map(|body| {
                body.map_frame(|frame| {
                    frame.map_data(|data| {
                        super::trim_managed_fields::without_managed_fields(&data).unwrap_or(data)
                    })
                })
                .boxed()
            }))
        })
    }
}

impl ApiState {
    /// A `kube::Client` for an in-process component acting as `user`.
    pub fn client(self: &Arc<Self>, user: UserInfo) -> kube::Client {
        InProcessService::new(self.clone(), user).into_client()
    }
}
