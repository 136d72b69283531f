//! Raw HTTPS requests to a test server through curl, for what a well-behaved client would
//! never send (bad bodies, wrong content types, no credentials), over HTTP/1.1 unless
//! [`Request::http2`] asks for HTTP/2. Invariant:
//! the server's certificate is always verified against the cluster CA; only the credentials
//! vary.

use std::fs;
use std::process::Command;
use std::time::Duration;

use super::process::run;
use super::TestServer;

/// Who a request claims to be.
#[derive(Debug, Clone)]
pub enum Auth {
    /// The static admin bearer token.
    Admin,
    /// No credentials at all.
    Anonymous,
    /// Some other bearer token.
    Bearer(String),
}

/// A request being built; [`Request::send`] runs it.
pub struct Request<'a> {
    server: &'a TestServer,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    auth: Auth,
    http2: bool,
    /// curl's `--limit-rate` (bytes per second, upload and download), for a slow client.
    limit_rate: Option<u32>,
}

/// The server's answer.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    /// Raw response headers (all of them, as curl dumped them).
    pub headers: String,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; fails the test with the body when it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "reply body is not JSON ({e}): status {}\n{}\n{}",
                self.status,
                self.headers,
                self.text()
            )
        })
    }

    /// Asserts a Kubernetes `Status` failure reply with this code and reason; returns the
    /// Status for further checks.
    #[track_caller]
    pub fn expect_status(&self, code: u16, reason: &str) -> serde_json::Value {
        assert_eq!(
            self.status,
            code,
            "HTTP status; reply:\n{}{}",
            self.headers,
            self.text()
        );
        let status = self.json();
        assert_eq!(status["kind"], "Status", "reply is not a Status: {status}");
        assert_eq!(status["apiVersion"], "v1", "Status apiVersion: {status}");
        assert_eq!(status["status"], "Failure", "Status.status: {status}");
        assert_eq!(status["code"], code, "Status.code: {status}");
        assert_eq!(status["reason"], reason, "Status.reason: {status}");
        let content_type = self
            .header("content-type")
            .unwrap_or_else(|| panic!("no Content-Type on the Status reply:\n{}", self.headers));
        assert!(
            content_type.starts_with("application/json"),
            "Status Content-Type is {content_type}"
        );
        status
    }

    /// The value of the (last) response header `name`, case-insensitive.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .next_back()
    }
}

impl<'a> Request<'a> {
    pub(super) fn new(server: &'a TestServer, method: &str, path: &str) -> Request<'a> {
        Request {
            server,
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
            auth: Auth::Admin,
            http2: false,
            limit_rate: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn content_type(self, value: &str) -> Self {
        self.header("Content-Type", value)
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sends over HTTP/2 instead of HTTP/1.1.
    pub fn http2(mut self) -> Self {
        self.http2 = true;
        self
    }

    /// Sends (and reads) at most `bytes_per_second`: a client whose body trickles in.
    pub fn limit_rate(mut self, bytes_per_second: u32) -> Self {
        self.limit_rate = Some(bytes_per_second);
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Sends the request; fails the test only when no HTTP answer came back at all.
    #[track_caller]
    pub fn send(self) -> HttpReply {
        let id = self.server.next_id();
        let dir = self.server.files_dir();
        let body_out = dir.join(format!("curl-{id}.body"));
        let headers_out = dir.join(format!("curl-{id}.headers"));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--noproxy", "*", "--max-time", "30"])
            .arg("--cacert")
            .arg(self.server.ca_path())
            .arg("-X")
            .arg(&self.method)
            .arg("-o")
            .arg(&body_out)
            .arg("-D")
            .arg(&headers_out)
            .args(["-w", "%{http_code}"]);
        // HTTP/1.1 by default: when the server answers (401) before a request body is fully
        // sent, it ends the HTTP/2 stream with RST_STREAM(NO_ERROR), and curl 7.88 then
        // discards the complete answer it got. kubectl, helm and kube-rs cover HTTP/2.
        cmd.arg(if self.http2 { "--http2" } else { "--http1.1" });
        match &self.auth {
            Auth::Admin => {
                cmd.arg("-H").arg(format!(
                    "Authorization: Bearer {}",
                    self.server.admin_token()
                ));
            }
            Auth::Anonymous => {}
            Auth::Bearer(token) => {
                cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
            }
        }
        for (k, v) in &self.headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if let Some(rate) = self.limit_rate {
            // No `Expect: 100-continue` wait either: the body starts at once, slowly.
            cmd.args(["--limit-rate", &rate.to_string(), "-H", "Expect:"]);
        }
        if let Some(body) = &self.body {
            let body_in = dir.join(format!("curl-{id}.request"));
            fs::write(&body_in, body).expect("writing the request body");
            cmd.arg("--data-binary")
                .arg(format!("@{}", body_in.display()));
        }
        cmd.arg(format!("{}{}", self.server.url(), self.path));
        let result = run(&mut cmd, None, Duration::from_secs(40));
        // A server that answers early (413) and closes may make curl report a send error
        // although the status line arrived; the status code decides.
        let status: u16 = result.stdout.trim().parse().unwrap_or(0);
        assert!(
            status != 0,
            "no HTTP reply to {} {}:\n{result}",
            self.method,
            self.path
        );
        HttpReply {
            status,
            headers: fs::read_to_string(&headers_out).unwrap_or_default(),
            body: fs::read(&body_out).unwrap_or_default(),
        }
    }
}
