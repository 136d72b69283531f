//! `skiff token [create|list|delete]`: bootstrap tokens as kubeadm makes them — a Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` with
//! `token-id`, `token-secret`, `expiration`, `usage-bootstrap-authentication`,
//! `usage-bootstrap-signing`, `auth-extra-groups` and `description` — written through the
//! local server's API with the admin kubeconfig. `create` prints the full join token
//! `K10<CA hash>::<id>.<secret>` (as `k3s token create` does), so an agent pins the CA with
//! it exactly as with the server token. `skiff token` alone prints the server token.
//!
//! Invariant: this module only formats and parses; the API server's bootstrap-token
//! authenticator (`apiserver::authn::bootstrap`) is the one that decides what a token is
//! worth.

use crate::cli::{TokenArgs, TokenCommand};
use crate::pki::JoinToken;
use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use std::collections::BTreeMap;
use std::time::Duration;

/// kubeadm's default extra group, the one the join bindings name.
pub const DEFAULT_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
const PREFIX: &str = "bootstrap-token-";
const NAMESPACE: &str = "kube-system";

/// `skiff token ...`.
pub async fn run(args: TokenArgs) -> Result<()> {
    let Some(command) = args.command.clone() else {
        return crate::server::print_token(&args.data_dir);
    };
    let (client, ca_pem) = admin_client(&args).await?;
    let api: Api<Secret> = Api::namespaced(client, NAMESPACE);
    match command {
        TokenCommand::Create {
            ttl,
            description,
            groups,
        } => {
            let ttl = parse_duration(&ttl).map_err(|e| anyhow!("--ttl: {e}"))?;
            let groups = parse_groups(&groups)?;
            let id = random_chars(6);
            let secret = random_chars(16);
            let expiration = (!ttl.is_zero()).then(|| {
                let at = chrono::Utc::now()
                    + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            });
            let obj = token_secret(&id, &secret, expiration.as_deref(), &description, &groups);
            api.create(&PostParams::default(), &obj)
                .await
                .context("creating the bootstrap token Secret")?;
            println!(
                "{}",
                JoinToken::bootstrap(&ca_pem, &format!("{id}.{secret}")).render()
            );
        }
        TokenCommand::List => {
            let mut list = api
                .list(&ListParams::default())
                .await
                .context("listing bootstrap tokens")?;
            list.items
                .retain(|s| s.type_.as_deref() == Some(SECRET_TYPE));
            print!("{}", render_list(&list.items, chrono::Utc::now()));
        }
        TokenCommand::Delete { ids } => {
            for raw in ids {
                let id = token_id(&raw)?;
                api.delete(&format!("{PREFIX}{id}"), &DeleteParams::default())
                    .await
                    .map_err(|e| match e {
                        kube::Error::Api(s) if s.code == 404 => {
                            anyhow!("bootstrap token {id:?} not found")
                        }
                        e => anyhow!("deleting bootstrap token {id:?}: {e}"),
                    })?;
                println!("bootstrap token {id:?} deleted");
            }
        }
    }
    Ok(())
}

/// A client from the admin kubeconfig, and the CA bundle it trusts (what the token pins).
async fn admin_client(args: &TokenArgs) -> Result<(kube::Client, String)> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", args.kubeconfig.display()))?;
    let ca_pem = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.as_deref())
        .and_then(|d| {
            base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .ok()
        })
        .and_then(|d| String::from_utf8(d).ok());
    let ca_pem = match ca_pem {
        Some(p) => p,
        None => {
            let path = args.data_dir.join("server/tls/server-ca.crt");
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading the cluster CA {}", path.display()))?
        }
    };
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .context("loading the kubeconfig")?;
    Ok((kube::Client::try_from(config)?, ca_pem))
}

fn random_chars(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The ID of `id`, `id.secret` or `K10<hash>::id.secret`.
fn token_id(raw: &str) -> Result<String> {
    let raw = raw.trim();
    let creds = match raw.strip_prefix("K10").and_then(|r| r.split_once("::")) {
        Some((_, c)) => c,
        None => raw,
    };
    let id = creds.split_once('.').map_or(creds, |(id, _)| id);
    if id.len() != 6
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        bail!("{raw:?} is not a bootstrap token ID (6 characters of [a-z0-9]) nor a token");
    }
    Ok(id.to_owned())
}

fn parse_groups(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for g in s.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        if !g.starts_with("system:bootstrappers:") {
            bail!("--groups: {g:?} must start with \"system:bootstrappers:\"");
        }
        out.push(g.to_owned());
    }
    Ok(out)
}

/// Go's `time.ParseDuration` for the units a TTL uses (`1h30m`, `90s`, `0`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let n: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

fn token_secret(
    id: &str,
    secret: &str,
    expiration: Option<&str>,
    description: &str,
    groups: &[String],
) -> Secret {
    let mut data = BTreeMap::from([
        ("token-id".to_owned(), id.to_owned()),
        ("token-secret".to_owned(), secret.to_owned()),
        (
            "usage-bootstrap-authentication".to_owned(),
            "true".to_owned(),
        ),
        ("usage-bootstrap-signing".to_owned(), "true".to_owned()),
    ]);
    if let Some(e) = expiration {
        data.insert("expiration".into(), e.to_owned());
    }
    if !description.is_empty() {
        data.insert("description".into(), description.to_owned());
    }
    if !groups.is_empty() {
        data.insert("auth-extra-groups".into(), groups.join(","));
    }
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{PREFIX}{id}")),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        type_: Some(SECRET_TYPE.into()),
        string_data: Some(data),
        ..Default::default()
    }
}

/// `kubeadm token list`'s table.
fn render_list(items: &[Secret], now: chrono::DateTime<chrono::Utc>) -> String {
    let mut rows = vec![[
        "TOKEN",
        "TTL",
        "EXPIRES",
        "USAGES",
        "DESCRIPTION",
        "EXTRA GROUPS",
    ]
    .map(String::from)];
    for s in items {
        let get = |k: &str| -> String {
            s.data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .unwrap_or_default()
        };
        let id = get("token-id");
        if id.is_empty() {
            continue;
        }
        let expiration = get("expiration");
        let (ttl, expires) = match chrono::DateTime::parse_from_rfc3339(&expiration) {
            Ok(t) => {
                let left = t.with_timezone(&chrono::Utc) - now;
                let ttl = if left <= chrono::Duration::zero() {
                    "<invalid>".to_owned()
                } else {
                    human(left.to_std().unwrap_or_default())
                };
                (ttl, expiration.clone())
            }
            Err(_) => ("<forever>".into(), "<never>".into()),
        };
        let mut usages = Vec::new();
        if let Some(d) = &s.data {
            for (k, v) in d {
                if let Some(u) = k.strip_prefix("usage-bootstrap-") {
                    if v.0 == b"true" {
                        usages.push(u.to_owned());
                    }
                }
            }
        }
        let or_none = |v: String| if v.is_empty() { "<none>".into() } else { v };
        rows.push([
            format!("{id}.{}", get("token-secret")),
            ttl,
            expires,
            or_none(usages.join(",")),
            or_none(get("description")),
            or_none(get("auth-extra-groups")),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// `23h`, `59m`, `30s` as kubeadm's duration printer rounds them.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 2 * 86400 {
        format!("{}d", s / 86400)
    } else if s >= 3600 {
        format!("{}h", s / 3600)
    } else if s >= 60 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_as_go_durations() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn token_ids_come_from_any_form_of_the_token() {
        assert_eq!(token_id("abcdef").unwrap(), "abcdef");
        assert_eq!(token_id("abcdef.0123456789abcdef").unwrap(), "abcdef");
        let full = JoinToken::bootstrap("ca", "abcdef.0123456789abcdef").render();
        assert_eq!(token_id(&full).unwrap(), "abcdef");
        assert!(token_id("ABC").is_err());
    }

    #[test]
    fn created_tokens_are_kubeadm_shaped_and_listed() {
        let s = token_secret(
            "abcdef",
            "0123456789abcdef",
            Some("2026-01-02T00:00:00Z"),
            "for n2",
            &[DEFAULT_GROUP.to_owned()],
        );
        assert_eq!(s.type_.as_deref(), Some(SECRET_TYPE));
        assert_eq!(s.metadata.name.as_deref(), Some("bootstrap-token-abcdef"));
        // What the API server stores: stringData folded into data.
        let mut stored = s.clone();
        stored.data = Some(
            s.string_data
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes())))
                .collect(),
        );
        let now = "2026-01-01T00:30:00Z".parse().unwrap();
        let out = render_list(&[stored], now);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("TOKEN "));
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "abcdef.0123456789abcdef",
                "23h",
                "2026-01-02T00:00:00Z",
                "authentication,signing",
                "for",
                "n2",
                DEFAULT_GROUP
            ]
        );
    }

    #[test]
    fn extra_groups_must_be_bootstrapper_groups() {
        assert!(parse_groups("system:masters").is_err());
        assert_eq!(parse_groups("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_groups(DEFAULT_GROUP).unwrap(), [DEFAULT_GROUP]);
    }
}
