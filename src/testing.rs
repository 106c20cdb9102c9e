//! Test support: a real HTTP/1.1 server on 127.0.0.1 that records every
//! request exactly as it arrived and answers from a script, so sender tests
//! check the exact bytes a provider would receive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent (`/path?a=1`).
    pub target: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Query parameters, percent-decoded, in order.
    pub fn query(&self) -> Vec<(String, String)> {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        form(query)
    }

    /// A form-encoded body, decoded.
    pub fn form(&self) -> Vec<(String, String)> {
        form(&self.body_text())
    }
}

fn form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (to provoke client timeouts).
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }
}

type Responder = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

/// A running server; it stops when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts a server; `respond(request, index)` is called for each request
    /// (index 0 for the first) and its answer sent back.
    pub async fn start(
        respond: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let respond: Arc<Responder> = Arc::new(respond);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    while let Some(request) = read_request(&mut socket).await {
                        let index = {
                            let mut all = recorded.lock().unwrap();
                            all.push(request.clone());
                            all.len() - 1
                        };
                        let reply = respond(&request, index);
                        if !reply.delay.is_zero() {
                            tokio::time::sleep(reply.delay).await;
                        }
                        let mut head = format!(
                            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
                            reply.status,
                            reply.body.len()
                        );
                        for (name, value) in &reply.headers {
                            head.push_str(&format!("{name}: {value}\r\n"));
                        }
                        head.push_str("\r\n");
                        if socket.write_all(head.as_bytes()).await.is_err()
                            || socket.write_all(&reply.body).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        TestServer {
            url,
            requests,
            task,
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one request (head, then a `content-length` body); `None` at EOF.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Recorded> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}

/// A fixed instant for outbox fixtures (2026-05-28, UTC).
pub const T0: i64 = 1_780_000_000;

/// A real database in a temp folder with customers and one queued message each.
pub struct Outbox {
    pub dir: tempfile::TempDir,
    pub store: crate::store::shared::SharedStore,
}

impl Outbox {
    pub fn database(&self) -> std::path::PathBuf {
        self.dir.path().join("r.db")
    }
}

/// One customer per entry of `customers` (first seen before [`T0`]) and one
/// message each on `channel`, due at [`T0`], optionally carrying a fallback
/// rendered for another channel (its content is "<channel> 版本").
pub fn outbox(
    customers: Vec<crate::store::ingest::NewCustomer>,
    channel: crate::base::model::Channel,
    fallback: Option<crate::base::model::Channel>,
) -> Outbox {
    use crate::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(&dir.path().join("r.db")).unwrap();
    let clinic = store
        .ensure_clinic("main", "c", "Asia/Shanghai", 0)
        .unwrap();
    let mut ingest = store.ingest().unwrap();
    for c in &customers {
        ingest.add_customer(clinic, c, T0 - 1000).unwrap();
    }
    ingest.commit().unwrap();
    let store = Arc::new(Mutex::new(store));
    for id in 1..=customers.len() as i64 {
        queue(&store, id, channel, T0, fallback);
    }
    Outbox { dir, store }
}

/// Queues one more message on `channel` for a customer, due at `due`, in a tick of its own.
pub fn queue_more(
    store: &crate::store::shared::SharedStore,
    customer_id: i64,
    channel: crate::base::model::Channel,
    due: i64,
) {
    queue(store, customer_id, channel, due, None);
}

/// Queues one more phone message for a customer, due at `due`, meant for
/// staff member `assign_to` (as an action with `assign = "advisor"` does).
pub fn queue_assigned(
    store: &crate::store::shared::SharedStore,
    customer_id: i64,
    due: i64,
    assign_to: Option<&str>,
) {
    queue_with(
        store,
        customer_id,
        crate::base::model::Channel::Phone,
        due,
        None,
        assign_to,
    );
}

fn queue(
    store: &crate::store::shared::SharedStore,
    customer_id: i64,
    channel: crate::base::model::Channel,
    due: i64,
    fallback: Option<crate::base::model::Channel>,
) {
    queue_with(store, customer_id, channel, due, fallback, None);
}

fn queue_with(
    store: &crate::store::shared::SharedStore,
    customer_id: i64,
    channel: crate::base::model::Channel,
    due: i64,
    fallback: Option<crate::base::model::Channel>,
    assign_to: Option<&str>,
) {
    use crate::base::content::Content;
    use crate::store::ticks::{NewMessage, TickBatch, TickStart};
    let mut store = store.lock().unwrap();
    // One tick per message keeps the fixture independent of tick ordering.
    let at = store
        .last_tick()
        .unwrap()
        .map_or(due, |t| t.at.max(due - 1) + 1)
        .max(due);
    let tick = match store.begin_tick(at, at, |t| t.to_string()).unwrap() {
        TickStart::New(tick) | TickStart::Resume(tick) => tick,
        other => panic!("unexpected {other:?}"),
    };
    let fallback = fallback.map(|channel| {
        serde_json::to_string(&crate::store::outbox::Fallback {
            channel,
            content: Content::text(format!("{channel} 版本")),
        })
        .unwrap()
    });
    let batch = TickBatch {
        cursor: customer_id,
        messages: vec![NewMessage {
            customer_id,
            rule_id: "r".into(),
            action_index: 0,
            pool: crate::base::model::Pool::Warning,
            channel,
            template: "t".into(),
            content: Content::text("您好"),
            fallback,
            due_at: due,
            failure: None,
            held_out: false,
            attribution_days: 30,
            expires_at: None,
            assign_to: assign_to.map(str::to_string),
            cancel_if_stale: false,
        }],
        ..TickBatch::default()
    };
    store.commit_batch(&tick, &batch).unwrap();
    store.finish_tick(tick.id, at).unwrap();
}

/// The rows of the first markdown table after the heading that starts with
/// `heading` in `doc` (docs/wechat.md), each as its trimmed cells, header
/// and rule left out. Panics if there is no such table: a renamed heading
/// must not make a documentation test pass by testing nothing.
pub fn doc_table(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let start = doc
        .lines()
        .position(|l| l.starts_with('#') && l.trim_start_matches('#').trim().starts_with(heading))
        .unwrap_or_else(|| panic!("no heading `{heading}`"));
    let rows: Vec<Vec<String>> = doc
        .lines()
        .skip(start + 1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "no table under `{heading}`");
    rows
}

/// The errcodes of a table row's first cell: `40003, 41009` → both;
/// `other` → one no table lists.
pub fn doc_codes(cell: &str) -> Vec<i64> {
    if cell == "other" {
        return vec![987_654];
    }
    cell.split(',')
        .map(|code| {
            code.trim()
                .parse()
                .unwrap_or_else(|_| panic!("`{code}` is not an errcode"))
        })
        .collect()
}

/// How a table's outcome column names a send outcome: `sent`, `awaiting`,
/// `deferred`, `retried`, `retried after ...` (the provider said when),
/// `failed`, `opted out`, `paused` (the sender refused).
pub fn outcome_word(outcome: &crate::dispatch::sender::SendOutcome) -> &'static str {
    use crate::dispatch::sender::SendOutcome;
    match outcome {
        SendOutcome::Sent { .. } => "sent",
        SendOutcome::Awaiting { .. } => "awaiting",
        SendOutcome::Deferred { .. } => "deferred",
        SendOutcome::Retryable {
            retry_after: Some(_),
            ..
        } => "retried after",
        SendOutcome::Retryable { .. } => "retried",
        SendOutcome::Permanent { .. } => "failed",
        SendOutcome::OptedOut { .. } => "opted out",
        SendOutcome::Refused { .. } => "paused",
    }
}

/// The error or reason a send outcome carries ("" for sent and awaiting).
fn outcome_text(outcome: &crate::dispatch::sender::SendOutcome) -> &str {
    use crate::dispatch::sender::SendOutcome;
    match outcome {
        SendOutcome::Retryable { error, .. }
        | SendOutcome::Permanent { error }
        | SendOutcome::Refused { error, .. } => error,
        SendOutcome::Deferred { reason, .. } | SendOutcome::OptedOut { reason } => reason,
        SendOutcome::Sent { .. } | SendOutcome::Awaiting { .. } => "",
    }
}

/// Whether a table's outcome cell says what `outcome` is.
fn documented_as(cell: &str, outcome: &crate::dispatch::sender::SendOutcome) -> bool {
    let word = outcome_word(outcome);
    if word == "retried after" {
        cell.starts_with("retried after")
    } else {
        cell == word
    }
}

/// Asserts that a sender's `outcome` for a provider's `code` is what a
/// docs/wechat.md table row's outcome `cell` says, and that its text
/// quotes the code (0 excepted).
pub fn assert_documented(cell: &str, code: i64, outcome: &crate::dispatch::sender::SendOutcome) {
    assert!(
        documented_as(cell, outcome),
        "{code}: docs/wechat.md says {cell}, the sender {outcome:?}"
    );
    if code != 0 {
        assert!(
            outcome_text(outcome).contains(&code.to_string()),
            "{code}: {outcome:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_requests_and_answers_from_the_script() {
        let server = TestServer::start(|request, index| {
            Reply::json(200, serde_json::json!({"n": index, "path": request.path()}))
        })
        .await;
        let client = reqwest::Client::new();
        let answer: serde_json::Value = client
            .post(format!("{}/a/b?x=1%202", server.url))
            .header("X-Sig", "abc")
            .body("k=v&w=%E4%B8%AD")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["path"], "/a/b");
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].header("x-sig"), Some("abc"));
        assert_eq!(requests[0].query(), [("x".to_string(), "1 2".to_string())]);
        assert_eq!(requests[0].form()[1], ("w".to_string(), "中".to_string()));
    }
}
