//! `containerLogs`: reads a container's CRI log file (`<RFC3339Nano> stdout|stderr F|P <msg>`)
//! back as the text `kubectl logs` shows, with upstream's options (follow, tailLines,
//! limitBytes, sinceSeconds, sinceTime, timestamps).
//!
//! Invariant: only complete file lines are consumed (a line still being written is read
//! again on the next pass), partial (`P`) records are joined per stream until their `F`
//! record, and the output never exceeds `limitBytes`.

use chrono::{DateTime, FixedOffset, Utc};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub since: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub previous: bool,
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE" | "t" | "T")
}

impl LogOptions {
    /// Parses the query of `GET /containerLogs/...` (upstream's PodLogOptions names);
    /// the error text is what the client sees with a 400.
    pub fn from_query(query: Option<&str>, now: DateTime<Utc>) -> Result<LogOptions, String> {
        let mut o = LogOptions::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match k.as_ref() {
                "follow" => o.follow = truthy(&v),
                "previous" => o.previous = truthy(&v),
                "timestamps" => o.timestamps = truthy(&v),
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid tailLines {v:?}"))?;
                    if n < 0 {
                        return Err(
                            "tailLines: Invalid value: must be greater than or equal to 0".into(),
                        );
                    }
                    o.tail_lines = Some(n as u64);
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?;
                    if n < 1 {
                        return Err("limitBytes: Invalid value: must be greater than 0".into());
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                    if n < 1 {
                        return Err("sinceSeconds: Invalid value: must be greater than 0".into());
                    }
                    o.since = Some(now - chrono::Duration::seconds(n));
                }
                "sinceTime" => {
                    let t = DateTime::parse_from_rfc3339(&v)
                        .map_err(|_| format!("invalid sinceTime {v:?}"))?;
                    o.since = Some(t.with_timezone(&Utc));
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// One log message (a complete line, partial records joined).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The timestamp as written (RFC 3339 with nanoseconds).
    pub timestamp: String,
    pub time: Option<DateTime<FixedOffset>>,
    pub stderr: bool,
    /// Content, with its trailing newline when the record was complete.
    pub data: Vec<u8>,
}

/// Incremental CRI log parser: feed it bytes, get messages.
#[derive(Debug, Default)]
pub struct Parser {
    /// Partial records waiting for their final record: [stdout, stderr].
    pending: [Option<Message>; 2],
}

impl Parser {
    /// Parses the complete lines of `buf`; returns the messages and how many bytes were
    /// consumed (the rest is an unfinished line).
    pub fn feed(&mut self, buf: &[u8]) -> (Vec<Message>, usize) {
        let mut out = Vec::new();
        let mut consumed = 0;
        while let Some(nl) = buf[consumed..].iter().position(|&b| b == b'\n') {
            let line = &buf[consumed..consumed + nl];
            consumed += nl + 1;
            if let Some(m) = self.line(line) {
                out.push(m);
            }
        }
        (out, consumed)
    }

    /// What is still buffered as partial records (shown when a log ends mid-line).
    pub fn flush(&mut self) -> Vec<Message> {
        self.pending.iter_mut().filter_map(Option::take).collect()
    }

    fn line(&mut self, line: &[u8]) -> Option<Message> {
        let mut parts = line.splitn(4, |&b| b == b' ');
        let ts = std::str::from_utf8(parts.next()?).ok()?;
        let stream = parts.next()?;
        let tag = parts.next()?;
        let content = parts.next().unwrap_or_default();
        let stderr = match stream {
            b"stdout" => false,
            b"stderr" => true,
            _ => return None,
        };
        let partial = tag.split(|&b| b == b':').any(|t| t == b"P");
        let slot = &mut self.pending[stderr as usize];
        let mut msg = slot.take().unwrap_or_else(|| Message {
            timestamp: ts.to_owned(),
            time: DateTime::parse_from_rfc3339(ts).ok(),
            stderr,
            data: Vec::new(),
        });
        msg.data.extend_from_slice(content);
        if partial {
            *slot = Some(msg);
            None
        } else {
            msg.data.push(b'\n');
            Some(msg)
        }
    }
}

/// Turns messages into output under the options; keeps the byte budget across calls.
#[derive(Debug)]
pub struct Renderer {
    since: Option<DateTime<Utc>>,
    timestamps: bool,
    /// Bytes still allowed (limitBytes); `None` = unlimited.
    pub remaining: Option<u64>,
}

impl Renderer {
    pub fn new(o: &LogOptions) -> Renderer {
        Renderer {
            since: o.since,
            timestamps: o.timestamps,
            remaining: o.limit_bytes,
        }
    }

    pub fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }

    pub fn keep(&self, m: &Message) -> bool {
        match (self.since, m.time) {
            (Some(since), Some(t)) => t.with_timezone(&Utc) >= since,
            _ => true,
        }
    }

    pub fn render(&mut self, msgs: &[Message], out: &mut Vec<u8>) {
        let kept: Vec<&Message> = msgs.iter().filter(|m| self.keep(m)).collect();
        for m in kept {
            let start = out.len();
            if self.timestamps {
                out.extend_from_slice(m.timestamp.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(&m.data);
            if let Some(rem) = &mut self.remaining {
                let written = (out.len() - start) as u64;
                if written >= *rem {
                    out.truncate(start + *rem as usize);
                    *rem = 0;
                    return;
                }
                *rem -= written;
            }
        }
    }
}

/// The last `n` of `msgs` that pass the since filter.
pub fn tail(msgs: Vec<Message>, n: Option<u64>, r: &Renderer) -> Vec<Message> {
    let kept: Vec<Message> = msgs.into_iter().filter(|m| r.keep(m)).collect();
    match n {
        Some(n) if (n as usize) < kept.len() => kept[kept.len() - n as usize..].to_vec(),
        _ => kept,
    }
}

/// Streams the log at `path` into `tx` (chunks of output). With `follow`, keeps reading
/// until `running()` says the container has exited (then drains what is left) or the
/// receiver goes away.
pub async fn stream<F, Fut>(
    path: &Path,
    opts: &LogOptions,
    running: F,
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut parser = Parser::default();
    let mut renderer = Renderer::new(opts);
    let data = match tokio::fs::read(path).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let (mut msgs, mut offset) = parser.feed(&data);
    if !opts.follow {
        // Output the container left without a newline ends the log (`echo -n`), as
        // upstream shows it.
        msgs.extend(parser.flush());
    }
    let msgs = tail(msgs, opts.tail_lines, &renderer);
    let mut out = Vec::new();
    renderer.render(&msgs, &mut out);
    if !out.is_empty() && tx.send(out.into()).await.is_err() {
        return Ok(());
    }
    if !opts.follow || renderer.exhausted() {
        return Ok(());
    }
    let mut pending_tail: Vec<u8> = data[offset..].to_vec();
    let mut last_try = false;
    loop {
        let alive = running().await;
        let chunk = read_from(path, offset as u64).await?;
        let grew = !chunk.is_empty();
        if grew {
            offset += chunk.len();
            pending_tail.extend_from_slice(&chunk);
            let (msgs, used) = parser.feed(&pending_tail);
            pending_tail.drain(..used);
            let mut out = Vec::new();
            renderer.render(&msgs, &mut out);
            if !out.is_empty() && tx.send(out.into()).await.is_err() {
                return Ok(());
            }
            if renderer.exhausted() {
                return Ok(());
            }
        }
        if !alive && !grew {
            // One more pass after the exit was seen, so output written just before it is not lost.
            if last_try {
                // The container is gone: its unterminated last output ends the log.
                let mut out = Vec::new();
                renderer.render(&parser.flush(), &mut out);
                if !out.is_empty() {
                    let _ = tx.send(out.into()).await;
                }
                return Ok(());
            }
            last_try = true;
        }
        if !grew {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = tx.closed() => return Ok(()),
            }
        }
    }
}

async fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buf = Vec::new();
    f.take(4 << 20).read_to_end(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2024-01-01T00:00:01.000000001Z stdout F one\n\
2024-01-01T00:00:02.000000000Z stderr P tw\n\
2024-01-01T00:00:02.500000000Z stdout F three\n\
2024-01-01T00:00:03.000000000Z stderr F o\n\
2024-01-01T00:00:04.000000000Z stdout F four\n\
2024-01-01T00:00:05.000000000Z stdout F unfini";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-01-01T00:00:10Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn run(query: &str) -> String {
        let o = LogOptions::from_query(Some(query), now()).unwrap();
        let mut p = Parser::default();
        let (msgs, used) = p.feed(LOG.as_bytes());
        assert_eq!(
            &LOG[used..],
            "2024-01-01T00:00:05.000000000Z stdout F unfini"
        );
        let mut r = Renderer::new(&o);
        let msgs = tail(msgs, o.tail_lines, &r);
        let mut out = Vec::new();
        r.render(&msgs, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn partial_records_join_per_stream() {
        assert_eq!(run(""), "one\nthree\ntwo\nfour\n");
    }

    /// `echo -n` output: a partial record no final record follows (the runtime writes it at
    /// the container's exit).
    #[tokio::test]
    async fn output_without_a_newline_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2024-01-01T00:00:01Z stdout F a\n2024-01-01T00:00:02Z stdout P no-newline\n",
        )
        .unwrap();
        for follow in [false, true] {
            let o = LogOptions {
                follow,
                ..Default::default()
            };
            let (tx, mut rx) = tokio::sync::mpsc::channel(16);
            stream(&path, &o, || async { false }, tx).await.unwrap();
            let mut got = Vec::new();
            while let Some(b) = rx.recv().await {
                got.extend_from_slice(&b);
            }
            assert_eq!(
                String::from_utf8(got).unwrap(),
                "a\nno-newline",
                "follow={follow}"
            );
        }
    }

    #[test]
    fn tail_counts_messages() {
        assert_eq!(run("tailLines=2"), "two\nfour\n");
        assert_eq!(run("tailLines=0"), "");
        assert_eq!(run("tailLines=10"), "one\nthree\ntwo\nfour\n");
    }

    #[test]
    fn timestamps_prefix_the_first_record_time() {
        assert_eq!(
            run("timestamps=true&tailLines=2"),
            "2024-01-01T00:00:02.000000000Z two\n2024-01-01T00:00:04.000000000Z four\n"
        );
    }

    #[test]
    fn since_filters_and_limit_truncates() {
        assert_eq!(run("sinceTime=2024-01-01T00:00:02.4Z"), "three\nfour\n");
        assert_eq!(run("sinceSeconds=7"), "four\n");
        assert_eq!(run("sinceSeconds=8"), "three\ntwo\nfour\n");
        assert_eq!(run("limitBytes=6"), "one\nth");
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(LogOptions::from_query(Some("tailLines=-1"), now()).is_err());
        assert!(LogOptions::from_query(Some("limitBytes=0"), now()).is_err());
        assert!(LogOptions::from_query(Some("sinceTime=yesterday"), now()).is_err());
        let o = LogOptions::from_query(Some("follow=true&previous=1"), now()).unwrap();
        assert!(o.follow && o.previous);
    }

    #[tokio::test]
    async fn follow_ends_after_the_container_exits_with_the_last_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-01-01T00:00:01Z stdout F a\n").unwrap();
        let o = LogOptions {
            follow: true,
            ..Default::default()
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let a2 = alive.clone();
        let p2 = path.clone();
        let task = tokio::spawn(async move {
            stream(
                &p2,
                &o,
                || {
                    let a = a2.clone();
                    async move { a.load(std::sync::atomic::Ordering::SeqCst) }
                },
                tx,
            )
            .await
        });
        assert_eq!(&rx.recv().await.unwrap()[..], b"a\n");
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(b"2024-01-01T00:00:02Z stdout F b\n").unwrap();
        }
        assert_eq!(&rx.recv().await.unwrap()[..], b"b\n");
        alive.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("follow ended")
            .unwrap()
            .unwrap();
        assert!(rx.recv().await.is_none());
    }
}
