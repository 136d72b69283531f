//! Links in proxied answers, rewritten to lead back through the proxy (upstream's proxy
//! transport for `pods/proxy`, `services/proxy` and node ports): a page served at
//! `…/pods/web/proxy/` that links to its own `/static/app.css` would otherwise send the
//! browser to the API server's `/static/app.css`.
//!
//! Rewritten, as upstream: URL-valued attributes of the tags upstream lists (`a href`,
//! `img src`, `form action`, …) in `text/html` answers, and the `Location` of any answer,
//! when the URL is an absolute path or names the backend's own host (or the host the client
//! asked for). Relative URLs and other hosts are left alone. The rest of the page passes
//! byte for byte (upstream re-serializes every tag; this changes only the values it
//! rewrites), and script, style, textarea and title contents are never read as tags.

/// Which attributes of which tags hold URLs (upstream's table, from the HTML 4 and 5 attribute
/// indexes).
const URL_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("a", &["href"]),
    ("applet", &["codebase"]),
    ("area", &["href"]),
    ("audio", &["src"]),
    ("base", &["href"]),
    ("blockquote", &["cite"]),
    ("body", &["background"]),
    ("button", &["formaction"]),
    ("command", &["icon"]),
    ("del", &["cite"]),
    ("embed", &["src"]),
    ("form", &["action"]),
    ("frame", &["longdesc", "src"]),
    ("head", &["profile"]),
    ("html", &["manifest"]),
    ("iframe", &["longdesc", "src"]),
    ("img", &["longdesc", "src", "usemap"]),
    ("input", &["src", "usemap", "formaction"]),
    ("ins", &["cite"]),
    ("link", &["href"]),
    ("object", &["classid", "codebase", "data", "usemap"]),
    ("q", &["cite"]),
    ("script", &["src"]),
    ("source", &["src"]),
    ("video", &["poster", "src"]),
];

/// Elements whose content is text, not markup, up to their end tag.
const RAW_TEXT: &[&str] = &["script", "style", "textarea", "title"];

/// How URLs of one proxied answer are rewritten.
#[derive(Debug, Clone)]
pub struct LinkRewriter {
    /// The API path in front of the proxied path (`/api/v1/namespaces/ns/pods/web/proxy`).
    pub prefix: String,
    /// The backend's `host:port` as dialed.
    pub backend: String,
    /// The `Host` the client asked the API server for, if it said.
    pub client_host: Option<String>,
}

impl LinkRewriter {
    /// `url` leading through the proxy, or `None` to leave it as it is.
    /// A URL to the host the client asked for keeps its scheme and host; one to the
    /// backend loses them (the browser stays on the API server).
    pub fn rewrite_url(&self, url: &str) -> Option<String> {
        let trimmed = url.trim();
        let (origin, rest) = split_origin(trimmed)?;
        let keep = match origin {
            None => "",
            Some((origin, host)) if self.client_host.as_deref() == Some(host) => origin,
            Some((_, host)) if host == self.backend => "",
            Some(_) => return None,
        };
        // `rest` is an absolute path with its query and fragment.
        let cut = rest.find(['?', '#']).unwrap_or(rest.len());
        let (path, tail) = rest.split_at(cut);
        if path.starts_with(&self.prefix) {
            return origin.map(|_| format!("{keep}{path}{tail}"));
        }
        let mut joined = clean_path(&format!("{}{path}", self.prefix));
        if path.ends_with('/') && !joined.ends_with('/') {
            joined.push('/');
        }
        Some(format!("{keep}{joined}{tail}"))
    }

    /// `html` with the URL-valued attributes of its tags rewritten; `None` if nothing
    /// changed.
    pub fn rewrite_html(&self, html: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(html.len() + 256);
        let mut copied = 0;
        let mut changed = false;
        let mut i = 0;
        while let Some(lt) = find(html, i, b"<") {
            i = lt + 1;
            let rest = &html[i..];
            if rest.starts_with(b"!--") {
                i = find(html, i + 3, b"-->").map_or(html.len(), |e| e + 3);
                continue;
            }
            if rest
                .first()
                .is_some_and(|c| matches!(c, b'!' | b'?' | b'/'))
            {
                i = find(html, i, b">").map_or(html.len(), |e| e + 1);
                continue;
            }
            if !rest.first().is_some_and(u8::is_ascii_alphabetic) {
                continue;
            }
            let tag = Tag::parse(html, i);
            i = tag.end;
            let attrs = URL_ATTRIBUTES
                .iter()
                .find(|(t, _)| tag.name.eq_ignore_ascii_case(t))
                .map(|(_, a)| *a)
                .unwrap_or_default();
            for (name, value) in &tag.attributes {
                if !attrs.iter().any(|a| name.eq_ignore_ascii_case(a)) {
                    continue;
                }
                let raw = &html[value.clone()];
                let Ok(text) = std::str::from_utf8(raw) else {
                    continue;
                };
                if let Some(new) = self.rewrite_url(text) {
                    out.extend_from_slice(&html[copied..value.start]);
                    out.extend_from_slice(new.as_bytes());
                    copied = value.end;
                    changed = true;
                }
            }
            if !tag.self_closing && RAW_TEXT.iter().any(|r| tag.name.eq_ignore_ascii_case(r)) {
                i = end_of_raw_text(html, i, &tag.name);
            }
        }
        if !changed {
            return None;
        }
        out.extend_from_slice(&html[copied..]);
        Some(out)
    }
}

/// `(origin, host)` (`http://h:1`, `h:1`; `//h:1` with no scheme) and the absolute path with
/// query and fragment of a URL that is an absolute path or has a host and a path; `None`
/// for any other (relative, `mailto:`, a host without a path), which stays as it is.
fn split_origin(url: &str) -> Option<(Option<(&str, &str)>, &str)> {
    let authority_at = match url.find("://") {
        Some(p)
            if url[..p]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            Some(p + 3)
        }
        _ => url.starts_with("//").then_some(2),
    };
    match authority_at {
        Some(a) => {
            let end = url[a..].find(['/', '?', '#']).map_or(url.len(), |e| a + e);
            let rest = &url[end..];
            rest.starts_with('/')
                .then_some((Some((&url[..end], &url[a..end])), rest))
        }
        None => url.starts_with('/').then_some((None, url)),
    }
}

/// `path` with empty and `.` segments dropped and `..` applied (Go's `path.Clean` for an
/// absolute path; a trailing slash is dropped).
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Where the raw text of element `name` that starts at `from` ends: at its end tag (the
/// tag itself is left for the scan), or at the end of the page.
fn end_of_raw_text(html: &[u8], from: usize, name: &str) -> usize {
    let mut i = from;
    while let Some(p) = find(html, i, b"</") {
        let after = &html[p + 2..];
        if after.len() >= name.len() && after[..name.len()].eq_ignore_ascii_case(name.as_bytes()) {
            return p;
        }
        i = p + 2;
    }
    html.len()
}

/// A start tag: its name, its attributes (name, byte range of the value without quotes),
/// where it ends (past the `>`), and whether it closes itself.
struct Tag {
    name: String,
    attributes: Vec<(String, std::ops::Range<usize>)>,
    end: usize,
    self_closing: bool,
}

impl Tag {
    /// Parses the tag whose name starts at `i` (just past the `<`), as browsers do.
    fn parse(html: &[u8], mut i: usize) -> Tag {
        let is_name = |c: u8| !c.is_ascii_whitespace() && c != b'/' && c != b'>';
        let start = i;
        while i < html.len() && is_name(html[i]) {
            i += 1;
        }
        let name = String::from_utf8_lossy(&html[start..i]).into_owned();
        let mut tag = Tag {
            name,
            attributes: Vec::new(),
            end: html.len(),
            self_closing: false,
        };
        loop {
            while i < html.len() && (html[i].is_ascii_whitespace() || html[i] == b'/') {
                i += 1;
            }
            if i >= html.len() {
                return tag;
            }
            if html[i] == b'>' {
                tag.self_closing = i > 0 && html[i - 1] == b'/';
                tag.end = i + 1;
                return tag;
            }
            let name_start = i;
            while i < html.len() && is_name(html[i]) && html[i] != b'=' {
                i += 1;
            }
            let attr = String::from_utf8_lossy(&html[name_start..i]).into_owned();
            while i < html.len() && html[i].is_ascii_whitespace() {
                i += 1;
            }
            if html.get(i) != Some(&b'=') {
                continue;
            }
            i += 1;
            while i < html.len() && html[i].is_ascii_whitespace() {
                i += 1;
            }
            let value = match html.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let end = find(html, i + 1, &[q]).unwrap_or(html.len());
                    let v = i + 1..end;
                    i = (end + 1).min(html.len());
                    v
                }
                _ => {
                    let s = i;
                    while i < html.len() && !html[i].is_ascii_whitespace() && html[i] != b'>' {
                        i += 1;
                    }
                    s..i
                }
            };
            tag.attributes.push((attr, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewriter() -> LinkRewriter {
        LinkRewriter {
            prefix: "/api/v1/namespaces/ns/pods/web/proxy".into(),
            backend: "10.42.0.5:8080".into(),
            client_host: Some("127.0.0.1:6443".into()),
        }
    }

    #[test]
    fn absolute_paths_and_own_hosts_go_through_the_proxy_and_others_stay() {
        let r = rewriter();
        let p = "/api/v1/namespaces/ns/pods/web/proxy";
        assert_eq!(
            r.rewrite_url("/static/app.css").unwrap(),
            format!("{p}/static/app.css")
        );
        assert_eq!(r.rewrite_url("/dir/").unwrap(), format!("{p}/dir/"));
        assert_eq!(r.rewrite_url("/").unwrap(), format!("{p}/"));
        assert_eq!(
            r.rewrite_url("/a/../b?x=1&amp;y=2#top").unwrap(),
            format!("{p}/b?x=1&amp;y=2#top")
        );
        // The backend's host goes; the API server's, as the client named it, stays.
        assert_eq!(
            r.rewrite_url("http://10.42.0.5:8080/x").unwrap(),
            format!("{p}/x")
        );
        assert_eq!(
            r.rewrite_url("//10.42.0.5:8080/x").unwrap(),
            format!("{p}/x")
        );
        assert_eq!(
            r.rewrite_url("https://127.0.0.1:6443/y").unwrap(),
            format!("https://127.0.0.1:6443{p}/y")
        );
        // Already through the proxy: only the host goes.
        assert_eq!(r.rewrite_url(&format!("{p}/z")), None);
        assert_eq!(
            r.rewrite_url(&format!("http://10.42.0.5:8080{p}/z"))
                .unwrap(),
            format!("{p}/z")
        );
        for kept in [
            "app.css",
            "../up",
            "?q=1",
            "#frag",
            "http://example.com/x",
            "http://10.42.0.5:8080",
            "mailto:a@b",
            "javascript:void(0)",
        ] {
            assert_eq!(r.rewrite_url(kept), None, "{kept}");
        }
    }

    #[test]
    fn only_url_attributes_of_listed_tags_change_and_the_rest_is_byte_for_byte() {
        let r = rewriter();
        let page = concat!(
            "<!DOCTYPE html>\n<HTML><head><title>a <a href=\"/t\"></title>",
            "<link rel=stylesheet href=/s.css>",
            "<script src='/app.js'>var s = '<a href=\"/in-script\">';</script></head>\n",
            "<!-- <a href=\"/commented\"> -->",
            "<body><A HREF = \"/x\" title=\"/not-a-url\">x</A>",
            "<img alt=\"\" src=\"relative.png\"/><div data-href=\"/no\"></div>",
            "<form action=\"/post\" method=post><input type=image src=/i.png /></form></body></HTML>",
        );
        let out = String::from_utf8(r.rewrite_html(page.as_bytes()).unwrap()).unwrap();
        let p = "/api/v1/namespaces/ns/pods/web/proxy";
        let want = page
            .replace("href=/s.css", &format!("href={p}/s.css"))
            .replace("src='/app.js'", &format!("src='{p}/app.js'"))
            .replace("HREF = \"/x\"", &format!("HREF = \"{p}/x\""))
            .replace("action=\"/post\"", &format!("action=\"{p}/post\""))
            .replace("src=/i.png", &format!("src={p}/i.png"));
        assert_eq!(out, want);
        assert_eq!(r.rewrite_html(b"<p>no links</p><a href=\"rel\">"), None);
    }
}
