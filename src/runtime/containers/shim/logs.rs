//! CRI log format writer: `<RFC3339Nano> <stdout|stderr> <F|P> <line>\n`.
//!
//! Invariant: every byte the container writes appears exactly once; a line longer than
//! `MAX_LINE` or cut off at stop is written as partial (`P`) chunks, and the chunk that
//! ends a line is full (`F`).

use std::io::Write;
use std::path::Path;

pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One CRI log line (without the newline of the content, with a trailing `\n`).
pub fn format_line(ts: &str, stream: Stream, full: bool, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ts.len() + content.len() + 12);
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.name().as_bytes());
    out.extend_from_slice(if full { b" F " } else { b" P " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

pub struct CriLog<W: Write> {
    out: W,
    pending: [Vec<u8>; 2],
    clock: fn() -> String,
}

fn slot(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl CriLog<std::fs::File> {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(CriLog::new(f, super::super::state::now_rfc3339))
    }
}

impl<W: Write> CriLog<W> {
    pub fn new(out: W, clock: fn() -> String) -> Self {
        CriLog {
            out,
            pending: [Vec::new(), Vec::new()],
            clock,
        }
    }

    /// Feeds container output; complete lines are written immediately.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> std::io::Result<()> {
        let ts = (self.clock)();
        let mut out = Vec::new();
        let pending = &mut self.pending[slot(stream)];
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(i) if pending.len() + i <= MAX_LINE => {
                    pending.extend_from_slice(&data[..i]);
                    out.extend(format_line(&ts, stream, true, pending));
                    pending.clear();
                    data = &data[i + 1..];
                }
                _ => {
                    let room = MAX_LINE - pending.len();
                    let take = room.min(data.len());
                    pending.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if pending.len() == MAX_LINE {
                        out.extend(format_line(&ts, stream, false, pending));
                        pending.clear();
                    }
                }
            }
        }
        if !out.is_empty() {
            self.out.write_all(&out)?;
        }
        Ok(())
    }

    /// At stop: output without a trailing newline is written as a partial line.
    pub fn flush_partial(&mut self) -> std::io::Result<()> {
        let ts = (self.clock)();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = &mut self.pending[slot(stream)];
            if !pending.is_empty() {
                let line = format_line(&ts, stream, false, pending);
                pending.clear();
                self.out.write_all(&line)?;
            }
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> String {
        "2024-01-02T03:04:05.123456789Z".into()
    }

    fn lines(log: &CriLog<Vec<u8>>) -> Vec<String> {
        String::from_utf8(log.out.clone())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn complete_lines_are_full_and_split_writes_are_joined() {
        let mut log = CriLog::new(Vec::new(), clock);
        log.write(Stream::Stdout, b"hello\nwor").unwrap();
        log.write(Stream::Stderr, b"oops\n").unwrap();
        log.write(Stream::Stdout, b"ld\n").unwrap();
        assert_eq!(
            lines(&log),
            [
                "2024-01-02T03:04:05.123456789Z stdout F hello",
                "2024-01-02T03:04:05.123456789Z stderr F oops",
                "2024-01-02T03:04:05.123456789Z stdout F world",
            ]
        );
    }

    #[test]
    fn long_lines_become_partial_chunks_ending_in_a_full_one() {
        let mut log = CriLog::new(Vec::new(), clock);
        let mut data = vec![b'x'; MAX_LINE + 10];
        data.push(b'\n');
        log.write(Stream::Stdout, &data).unwrap();
        let l = lines(&log);
        assert_eq!(l.len(), 2);
        assert!(l[0].starts_with("2024-01-02T03:04:05.123456789Z stdout P xxx"));
        assert_eq!(l[0].len(), clock().len() + " stdout P ".len() + MAX_LINE);
        assert_eq!(l[1], format!("{} stdout F {}", clock(), "x".repeat(10)));
    }

    #[test]
    fn unterminated_output_is_flushed_as_partial_at_stop() {
        let mut log = CriLog::new(Vec::new(), clock);
        log.write(Stream::Stdout, b"no newline").unwrap();
        assert!(lines(&log).is_empty());
        log.flush_partial().unwrap();
        assert_eq!(lines(&log), [format!("{} stdout P no newline", clock())]);
    }

    #[test]
    fn empty_lines_are_kept() {
        let mut log = CriLog::new(Vec::new(), clock);
        log.write(Stream::Stdout, b"\n\n").unwrap();
        assert_eq!(lines(&log).len(), 2);
        assert!(lines(&log)[0].ends_with("stdout F "));
    }
}
