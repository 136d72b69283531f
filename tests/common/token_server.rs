//! A minimal Docker token server (the `realm` of a `docker-registry` configured with
//! `auth: token`) for the bearer-token tests.
//!
//! It answers `GET /token?service=..&scope=repository:NAME:ACTIONS` on 127.0.0.1: with the
//! right basic credentials it returns `{"token": JWT}` granting every requested action,
//! otherwise 401. The JWT is ES256-signed by a self-signed certificate whose PEM the
//! registry is given as `rootcertbundle`, and carries that certificate in its `x5c` header,
//! which is how distribution finds and trusts the signing key.
//!
//! Invariant: the serving thread is stopped and joined when the [`TokenServer`] is dropped
//! (also while a test panics); nothing is left listening.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SigningKey as _};

/// The `service` (JWT audience) the registry and the token server agree on.
pub const SERVICE: &str = "skiff-test-registry";
/// The `issuer` the registry trusts.
pub const ISSUER: &str = "skiff-test-token-issuer";
/// How long an issued token is valid.
const TOKEN_LIFETIME_SECS: u64 = 300;

/// Counts of what the server did, for asserting the token flow really ran.
#[derive(Default)]
struct Counters {
    issued: AtomicUsize,
    refused: AtomicUsize,
}

pub struct TokenServer {
    addr: SocketAddr,
    cert_pem: String,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the serving thread needs.
struct Issuer {
    user: String,
    password: String,
    key: KeyPair,
    /// The signing certificate (DER, standard base64) for the `x5c` header.
    x5c: String,
    counters: Arc<Counters>,
}

impl TokenServer {
    /// Starts a token server that accepts `user`/`password` as basic credentials.
    pub fn start(user: &str, password: &str) -> TokenServer {
        let key = KeyPair::generate().expect("an ECDSA P-256 key for token signing");
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("certificate parameters");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "skiff test token signer");
        params.distinguished_name = dn;
        let cert = params
            .self_signed(&key)
            .expect("self-signing the token signer");
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the token server");
        let addr = listener.local_addr().expect("the token server's address");
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let issuer = Issuer {
            user: user.to_string(),
            password: password.to_string(),
            key,
            x5c: STANDARD.encode(cert.der()),
            counters: counters.clone(),
        };
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("token-server".into())
            .spawn(move || serve(listener, issuer, stop_flag))
            .expect("spawning the token server thread");
        TokenServer {
            addr,
            cert_pem: cert.pem(),
            counters,
            stop,
            thread: Some(thread),
        }
    }

    /// The URL the registry names as `realm` in its challenge.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The signing certificate, for the registry's `rootcertbundle`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Tokens handed out so far.
    pub fn issued(&self) -> usize {
        self.counters.issued.load(Ordering::SeqCst)
    }

    /// Token requests refused for bad or missing credentials.
    pub fn refused(&self) -> usize {
        self.counters.refused.load(Ordering::SeqCst)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: TcpListener, issuer: Issuer, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        // A stuck client must not hold the (single) serving thread forever.
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
        // Errors only affect this client, which sees a closed connection.
        let _ = handle(conn, &issuer);
    }
}

/// One request per connection (`Connection: close`), enough for registry clients.
fn handle(conn: TcpStream, issuer: &Issuer) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (status, body) = if path != "/token" {
        ("404 Not Found", r#"{"error":"not found"}"#.to_string())
    } else if !issuer.accepts(authorization.as_deref()) {
        issuer.counters.refused.fetch_add(1, Ordering::SeqCst);
        (
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}"#
                .to_string(),
        )
    } else {
        let scopes: Vec<String> = form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
            .collect();
        let token = issuer.token(&scopes);
        issuer.counters.issued.fetch_add(1, Ordering::SeqCst);
        (
            "200 OK",
            serde_json::json!({"token": token, "expires_in": TOKEN_LIFETIME_SECS}).to_string(),
        )
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

impl Issuer {
    fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some(encoded) = authorization.and_then(|a| a.strip_prefix("Basic ")) else {
            return false;
        };
        let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
            return false;
        };
        decoded == format!("{}:{}", self.user, self.password).as_bytes()
    }

    /// A JWT granting each `type:name:actions` scope in full.
    fn token(&self, scopes: &[String]) -> String {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(serde_json::json!({
                    "type": kind,
                    "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": self.user,
            "aud": SERVICE,
            "exp": now + TOKEN_LIFETIME_SECS,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{}", self.counters.issued.load(Ordering::SeqCst)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let der = self
            .key
            .sign(signing_input.as_bytes())
            .expect("signing the token");
        let signature = jose_signature(&der);
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// ring signs ECDSA as DER `SEQUENCE { r INTEGER, s INTEGER }`; JWS ES256 wants the two
/// integers as fixed 32-byte big-endian halves.
fn jose_signature(der: &[u8]) -> Vec<u8> {
    fn read_len(b: &[u8], i: &mut usize) -> usize {
        let first = b[*i] as usize;
        *i += 1;
        if first < 0x80 {
            return first;
        }
        let mut len = 0;
        for _ in 0..(first & 0x7f) {
            len = (len << 8) | b[*i] as usize;
            *i += 1;
        }
        len
    }
    fn read_int(b: &[u8], i: &mut usize) -> Vec<u8> {
        assert_eq!(b[*i], 0x02, "an ASN.1 INTEGER in the ECDSA signature");
        *i += 1;
        let len = read_len(b, i);
        let mut v = b[*i..*i + len].to_vec();
        *i += len;
        while v.len() > 32 && v[0] == 0 {
            v.remove(0);
        }
        assert!(v.len() <= 32, "a P-256 signature integer fits 32 bytes");
        let mut out = vec![0u8; 32 - v.len()];
        out.extend(v);
        out
    }
    assert_eq!(der[0], 0x30, "an ASN.1 SEQUENCE as the ECDSA signature");
    let mut i = 1;
    read_len(der, &mut i);
    let mut out = read_int(der, &mut i);
    out.extend(read_int(der, &mut i));
    out
}
