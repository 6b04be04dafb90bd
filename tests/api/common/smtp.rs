//! A local SMTP sink for the tests, written here (RFC 5321's small core, no TLS, no AUTH): it
//! greets with 220, answers EHLO/HELO, MAIL, RCPT, RSET and NOOP with 250, DATA with 354 and
//! the message's end (`<CRLF>.<CRLF>`) with 250, QUIT with 221, and records each message
//! (envelope sender, recipients, the raw data with dot-stuffing undone). It can answer the next
//! N messages with `451` (a temporary failure) to test retries. The MIME helpers below read
//! what it got: headers (unfolded) and the decoded text and HTML parts.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: String,
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    /// Messages still to refuse with 451 at the end of DATA.
    fail_next: usize,
    /// Messages refused so far.
    refused: usize,
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, shared.clone()));
            }
        });
        SmtpSink { port, state }
    }

    /// `SMTP_URL` for this sink.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Answers the next `n` messages with `451 4.3.0` (nothing recorded).
    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    pub fn refused(&self) -> usize {
        self.state.lock().unwrap().refused
    }

    pub fn messages(&self) -> Vec<Received> {
        self.state.lock().unwrap().messages.clone()
    }

    /// Waits up to 10 s for at least `n` messages.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..500 {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the SMTP sink got {} messages, expected {n}",
            self.messages().len()
        );
    }
}

/// One SMTP session: any number of transactions until QUIT or the connection closes.
async fn session(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if !reply(&mut write, "220 sink.test ESMTP test sink").await {
        return;
    }
    let (mut from, mut rcpts) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" => "250-sink.test greets you\r\n250 8BITMIME".to_owned(),
            "HELO" | "NOOP" => "250 OK".to_owned(),
            "RSET" => {
                (from, rcpts) = (String::new(), Vec::new());
                "250 OK".to_owned()
            }
            "MAIL" => {
                from = address(&command);
                rcpts.clear();
                "250 2.1.0 OK".to_owned()
            }
            "RCPT" => {
                rcpts.push(address(&command));
                "250 2.1.5 OK".to_owned()
            }
            "DATA" => {
                if !reply(&mut write, "354 End data with <CR><LF>.<CR><LF>").await {
                    return;
                }
                let Some(data) = read_data(&mut lines).await else {
                    return;
                };
                let mut s = state.lock().unwrap();
                if s.fail_next > 0 {
                    s.fail_next -= 1;
                    s.refused += 1;
                    "451 4.3.0 Temporary failure, try again later".to_owned()
                } else {
                    s.messages.push(Received {
                        from: std::mem::take(&mut from),
                        rcpts: std::mem::take(&mut rcpts),
                        data,
                    });
                    "250 2.0.0 Queued".to_owned()
                }
            }
            "QUIT" => {
                reply(&mut write, "221 2.0.0 Bye").await;
                return;
            }
            _ => "502 5.5.2 Command not implemented".to_owned(),
        };
        if !reply(&mut write, &answer).await {
            return;
        }
    }
}

/// Writes one reply line (or lines); false when the client is gone.
async fn reply(w: &mut tokio::net::tcp::OwnedWriteHalf, text: &str) -> bool {
    w.write_all(format!("{text}\r\n").as_bytes()).await.is_ok()
}

/// `MAIL FROM:<a@b> SIZE=1` → `a@b`.
fn address(command: &str) -> String {
    let start = command.find('<').map_or(0, |i| i + 1);
    let end = command[start..]
        .find('>')
        .map_or(command.len(), |i| start + i);
    command[start..end].to_owned()
}

/// The message up to `<CRLF>.<CRLF>`, dot-stuffing undone, lines joined with CRLF.
async fn read_data(lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if text == "." {
            return Some(data);
        }
        data.push_str(text.strip_prefix('.').unwrap_or(text));
        data.push_str("\r\n");
    }
}

/// Headers (unfolded, in order) and body of a MIME entity.
fn split_entity(raw: &str) -> (Vec<(String, String)>, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    (headers, body.to_owned())
}

fn header_of(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn decode(encoding: Option<&str>, body: &str) -> String {
    match encoding.map(str::to_ascii_lowercase).as_deref() {
        Some("base64") => {
            let compact: String = body.split_whitespace().collect();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .expect("base64 part"),
            )
            .expect("utf-8 part")
        }
        Some("quoted-printable") => {
            let bytes = body.replace("=\r\n", "").into_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'=' && i + 2 < bytes.len() {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).expect("=XX"));
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).expect("utf-8 part")
        }
        _ => body.to_owned(),
    }
}

impl Received {
    /// A top-level header, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        header_of(&split_entity(&self.data).0, name)
    }

    /// The decoded body of the first part whose Content-Type starts with `mime`
    /// (`text/plain`, `text/html`).
    pub fn part(&self, mime: &str) -> Option<String> {
        let (headers, body) = split_entity(&self.data);
        let content_type = header_of(&headers, "Content-Type")?;
        let boundary = content_type
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))?
            .trim_matches('"')
            .to_owned();
        body.split(&format!("--{boundary}"))
            .map(|p| p.trim_start_matches("\r\n"))
            .map(split_entity)
            .find(|(h, _)| {
                header_of(h, "Content-Type")
                    .is_some_and(|t| t.to_ascii_lowercase().starts_with(mime))
            })
            .map(|(h, b)| {
                let b = b.strip_suffix("\r\n").unwrap_or(&b).to_owned();
                decode(header_of(&h, "Content-Transfer-Encoding").as_deref(), &b)
            })
    }
}
