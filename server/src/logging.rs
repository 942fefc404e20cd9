//! Logging set-up: the format on stderr (`log_format`: text or JSON lines), colours only on a
//! terminal, and the one rule every line obeys: no secret leaves the process in a log. Tokens
//! travel in URLs (`?access_token=…`, for WebSockets a browser opens without headers), so every
//! line is filtered on its way out ([`redact`]) whatever logged it; the access log
//! (`http::access`) redacts its path itself too, so the figure in it is right before filtering.
//!
//! A leaf: it imports nothing of the server.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal and `NO_COLOR` is unset.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, spans), for log shippers.
    Json,
}

impl LogFormat {
    /// `text` or `json` (the config validates the value first).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Query parameters whose values are secrets.
const SECRET_PARAMS: &[&str] = &["access_token=", "token="];

/// `text` with the value of every secret query parameter (`access_token=…`, `token=…`) replaced by
/// `***`. A value ends at `&`, whitespace, a quote, `#`, `>` or the end.
pub fn redact(text: &str) -> Cow<'_, str> {
    if !SECRET_PARAMS.iter().any(|p| text.contains(p)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, param)) = next_secret(rest) {
        let value_start = at + param.len();
        out.push_str(&rest[..value_start]);
        let value = &rest[value_start..];
        let end = value
            .find(|c: char| c == '&' || c == '#' || c == '"' || c == '\'' || c == '>' || c.is_whitespace())
            .unwrap_or(value.len());
        if end > 0 {
            out.push_str("***");
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The first secret parameter in `s` that starts a parameter (after `?`, `&`, whitespace, a quote
/// or the start), and where.
fn next_secret(s: &str) -> Option<(usize, &'static str)> {
    let mut best: Option<(usize, &'static str)> = None;
    for param in SECRET_PARAMS {
        let mut from = 0;
        while let Some(i) = s[from..].find(param) {
            let at = from + i;
            let starts = at == 0 || matches!(s.as_bytes()[at - 1], b'?' | b'&' | b' ' | b'"' | b'\'' | b'\t');
            if starts {
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, param));
                }
                break;
            }
            from = at + param.len();
        }
    }
    best
}

/// Start logging on stderr: `format`, the level filter from `RUST_LOG` (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(RedactingStderr);
    match format {
        LogFormat::Text => builder.with_ansi(colours()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

/// Colours when stderr is a terminal and `NO_COLOR` (no-color.org) is not set.
fn colours() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Stderr through [`redact`]: tracing's formatter writes each event as one buffer, so a secret
/// never straddles two writes.
#[derive(Debug, Clone, Copy)]
struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = Redacting<io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        Redacting(io::stderr())
    }
}

/// A writer that redacts each buffer written to it (see [`RedactingStderr`]).
#[derive(Debug)]
pub struct Redacting<W>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => match redact(text) {
                Cow::Borrowed(_) => self.0.write_all(buf),
                Cow::Owned(clean) => self.0.write_all(clean.as_bytes()),
            },
            Err(_) => self.0.write_all(buf),
        }?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_redacted() {
        assert_eq!(
            redact("GET /ws?remote_control_id=a&access_token=abc123 200"),
            "GET /ws?remote_control_id=a&access_token=*** 200"
        );
        assert_eq!(redact("/ws?access_token=abc&x=1"), "/ws?access_token=***&x=1");
        assert_eq!(redact(r#"{"path":"/ws?access_token=abc"}"#), r#"{"path":"/ws?access_token=***"}"#);
        assert_eq!(redact("a ?token=t1 and &access_token=t2#f"), "a ?token=*** and &access_token=***#f");
        assert_eq!(redact("/x?access_token="), "/x?access_token=");
        // Not a parameter of its own: left alone.
        assert_eq!(redact("/x?my_access_token=abc"), "/x?my_access_token=abc");
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn the_writer_redacts_each_line() {
        let mut w = Redacting(Vec::new());
        w.write_all(b"ws upgrade /ws?access_token=s3cret from 127.0.0.1\n").expect("write");
        assert_eq!(String::from_utf8(w.0).expect("utf8"), "ws upgrade /ws?access_token=*** from 127.0.0.1\n");
    }
}
