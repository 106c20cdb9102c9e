//! A provider on 127.0.0.1 for the fault and load tests: an HTTP/1.1 server
//! (std::net, a thread per connection, keep-alive) that records every
//! request the `webhook` sender makes — its `ref` (the outreach id), the
//! test's `run` tag and its idempotency key — and answers as scripted:
//! 200, an error status, 429 with Retry-After, or after a delay.
//!
//! Like a real gateway that takes an idempotency key, it delivers a message
//! once per key: a repeat of an accepted key is answered 200 again but not
//! delivered again. `deliveries` counts what reached "the customer".

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the provider answers for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// This HTTP status, e.g. 500.
    Status(u16),
    /// 429 with `Retry-After: secs`.
    TooMany(u64),
    /// Takes this long, then accepts (the client has usually given up).
    Hang(Duration),
}

/// One request as the provider saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub run: String,
    pub id: i64,
    pub key: Option<String>,
    pub status: u16,
    /// The provider accepted it (200).
    pub accepted: bool,
    /// Accepted and its key was new: the customer got a message.
    pub delivered: bool,
    /// The answer was written back (the client was still there).
    pub answered: bool,
}

#[derive(Default)]
struct State {
    mode: Option<Mode>,
    delay: Duration,
    requests: Vec<Request>,
    keys: HashMap<String, ()>,
    in_flight: usize,
}

#[derive(Clone)]
pub struct Provider {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl Provider {
    pub fn start() -> Provider {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let port = super::listen(move |stream| serve(stream, shared.clone()));
        Provider { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/send", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    /// Every answer waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Requests of one run, in arrival order.
    pub fn requests(&self, run: &str) -> Vec<Request> {
        let state = self.state.lock().unwrap();
        state
            .requests
            .iter()
            .filter(|r| r.run == run)
            .cloned()
            .collect()
    }

    /// Requests being handled right now.
    pub fn in_flight(&self) -> usize {
        self.state.lock().unwrap().in_flight
    }

    /// Outreach id → requests the provider accepted (200), for one run.
    pub fn accepted(&self, run: &str) -> HashMap<i64, usize> {
        let mut counts = HashMap::new();
        for r in self.requests(run).iter().filter(|r| r.accepted) {
            *counts.entry(r.id).or_default() += 1;
        }
        counts
    }

    /// Outreach id → deliveries (accepted with a new idempotency key).
    pub fn delivered(&self, run: &str) -> HashMap<i64, usize> {
        let mut counts = HashMap::new();
        for r in self.requests(run).iter().filter(|r| r.delivered) {
            *counts.entry(r.id).or_default() += 1;
        }
        counts
    }
}

fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    while let Some(request) = super::read_request(&mut reader) {
        let key = request.header("idempotency-key").map(str::to_string);
        let json: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let id = json["ref"].as_i64().unwrap_or(-1);
        let run = json["run"].as_str().unwrap_or("").to_string();
        let (mode, delay, index) = {
            let mut s = state.lock().unwrap();
            s.in_flight += 1;
            s.requests.push(Request {
                run,
                id,
                key: key.clone(),
                status: 0,
                accepted: false,
                delivered: false,
                answered: false,
            });
            (s.mode.unwrap_or(Mode::Ok), s.delay, s.requests.len() - 1)
        };
        std::thread::sleep(delay);
        let (status, extra) = match mode {
            Mode::Ok => (200, String::new()),
            Mode::Status(code) => (code, String::new()),
            Mode::TooMany(secs) => (429, format!("retry-after: {secs}\r\n")),
            Mode::Hang(wait) => {
                std::thread::sleep(wait);
                (200, String::new())
            }
        };
        {
            let mut s = state.lock().unwrap();
            // Keys are per test run: each run is a clinic of its own.
            let run = s.requests[index].run.clone();
            let delivered = status == 200
                && match &key {
                    Some(k) => s.keys.insert(format!("{run}/{k}"), ()).is_none(),
                    None => true,
                };
            let r = &mut s.requests[index];
            r.status = status;
            r.accepted = status == 200;
            r.delivered = delivered;
        }
        let body = if status == 200 {
            format!("{{\"msgid\":\"m{id}\"}}")
        } else {
            "{\"error\":\"busy\"}".to_string()
        };
        let reason = match status {
            200 => "OK",
            429 => "Too Many Requests",
            _ => "Error",
        };
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let answered = writer.write_all(answer.as_bytes()).is_ok() && writer.flush().is_ok();
        let mut s = state.lock().unwrap();
        s.in_flight -= 1;
        s.requests[index].answered = answered;
        if !answered {
            return;
        }
    }
}
