//! `GET /healthz` and `GET /metrics` for `recall run`, on the address in
//! `[metrics] listen` (loopback unless `allow_remote`).
//!
//! A deliberately small HTTP/1.1 handler on tokio's TCP listener rather
//! than hyper or axum: two read-only GET endpoints for a local scraper
//! need no routing, keep-alive, TLS or request bodies, and a few dozen
//! lines keep the daemon free of a server framework and its features. Each
//! connection gets one answer and is closed. Requests larger than 8 KiB or
//! slower than 5 seconds are dropped. It reads the database with its own
//! connection; it never writes, and never shows a customer's data.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::base::clock::Clock;
use crate::base::i18n::{lang, t};
use crate::base::metrics::{self, Snapshot};
use crate::store::Store;
use crate::store::health::SenderState;

/// What "healthy" means for this service.
#[derive(Debug, Clone)]
pub struct Health {
    /// The dispatcher must have completed a pass within this long.
    pub dispatch_within: Duration,
    /// The last scheduled slot's tick must have finished within this long
    /// after the slot.
    pub tick_grace: Duration,
    /// The configuration, for the tick schedule.
    pub config: Arc<crate::config::Config>,
    /// When the service started (Unix seconds).
    pub started: i64,
    /// The service's clock: what "now" is for a check and a scrape.
    pub clock: Clock,
}

/// Binds `listen` (so a taken port fails the start) and serves until
/// `shutdown`.
pub async fn start(
    listen: SocketAddr,
    database: PathBuf,
    health: Health,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| t!("observe.listening", listen).render(lang()))?;
    let store = Arc::new(Mutex::new(Store::open(&database)?));
    let health = Arc::new(health);
    tracing::info!(%listen, "{}", t!("observe.serving").render(lang()));
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((socket, _)) = accepted else { continue };
                    let store = store.clone();
                    let health = health.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(5),
                            answer(socket, store, health),
                        )
                        .await;
                    });
                }
                _ = shutdown.changed() => return,
            }
        }
    }))
}

async fn answer(
    mut socket: TcpStream,
    store: Arc<Mutex<Store>>,
    health: Arc<Health>,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await?;
        if n == 0 || request.len() + n > 8192 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => match scrape(store, health.clock).await {
            Ok(snapshot) => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::global().render(&snapshot),
            ),
            Err(e) => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                format!("database unavailable: {e}\n"),
            ),
        },
        ("GET" | "HEAD", "/healthz") => {
            let (ok, body) = check(store, &health).await;
            let status = if ok {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            (status, "application/json", body)
        }
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "not found\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        socket.write_all(body.as_bytes()).await?;
    }
    socket.shutdown().await
}

/// The numbers that live in the database, as of the clock's now.
async fn scrape(store: Arc<Mutex<Store>>, clock: Clock) -> Result<Snapshot, String> {
    tokio::task::spawn_blocking(move || {
        let store = store.lock().unwrap_or_else(|p| p.into_inner());
        let status = store
            .status(clock.now().timestamp())
            .map_err(|e| e.to_string())?;
        Ok(Snapshot {
            messages: status
                .outreach
                .iter()
                .map(|(c, s, n)| (c.to_string(), s.to_string(), *n))
                .collect(),
            due_now: status.due_now,
            pools: status
                .pools
                .iter()
                .map(|(p, n)| (p.to_string(), *n))
                .collect(),
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Healthy when the database answers, the dispatcher completed a pass
/// recently, and no scheduled tick is overdue; degraded (still 200, the
/// service itself works) when a configured sender is paused or failing,
/// with the reason.
async fn check(store: Arc<Mutex<Store>>, health: &Health) -> (bool, String) {
    let now = health.clock.now();
    let read = tokio::task::spawn_blocking(move || {
        let store = store.lock().unwrap_or_else(|p| p.into_inner());
        let last_tick = store.last_tick()?;
        Ok((last_tick, store.sender_health()?))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r: Result<_, crate::store::StoreError>| r.map_err(|e| e.to_string()));
    let (last_tick, senders) = match read {
        Ok((tick, senders)) => (Ok(tick), senders),
        Err(e) => (Err(e), Vec::new()),
    };
    let (_, last_dispatch) = metrics::global().last_activity();
    let mut problems = Vec::new();
    let database = match &last_tick {
        Ok(_) => "ok",
        Err(_) => {
            problems.push("the database does not answer".to_string());
            "unavailable"
        }
    };
    let since_dispatch = now.timestamp() - last_dispatch.max(health.started);
    if since_dispatch > health.dispatch_within.as_secs() as i64 {
        problems.push(format!(
            "the dispatcher has not completed a pass for {since_dispatch} s"
        ));
    }
    let last_tick_at = last_tick
        .as_ref()
        .ok()
        .and_then(|t| t.as_ref())
        .filter(|t| t.done)
        .map(|t| t.at);
    let config = &health.config;
    if let Some(slot) = config
        .schedule
        .latest_slot(config.clinic.timezone, now)
        .map(|t| t.timestamp())
    {
        let overdue = now.timestamp() - slot > health.tick_grace.as_secs() as i64
            && slot > health.started - health.tick_grace.as_secs() as i64;
        if last_tick_at.is_none_or(|at| at < slot) && overdue {
            problems.push("the last scheduled tick has not finished".to_string());
        }
    }
    let healthy = problems.is_empty();
    let senders: Vec<_> = senders
        .into_iter()
        .filter(|h| config.senders.contains_key(&h.sender) && h.state != SenderState::Ok)
        .collect();
    for h in &senders {
        let error = h.last_error.as_deref().unwrap_or("");
        let sender = h.sender.as_str();
        problems.push(
            match h.state {
                SenderState::Paused => t!(
                    "observe.sender_paused",
                    sender,
                    code = h.code.as_deref().unwrap_or(""),
                    error
                ),
                _ => t!(
                    "observe.sender_failing",
                    sender,
                    failures = h.failures,
                    error
                ),
            }
            .render(lang()),
        );
    }
    let status = match (healthy, senders.is_empty()) {
        (false, _) => "unhealthy",
        (true, false) => "degraded",
        (true, true) => "ok",
    };
    let senders: Vec<_> = senders
        .iter()
        .map(|h| {
            serde_json::json!({
                "sender": h.sender,
                "state": h.state.as_str(),
                "code": h.code,
                "failures": h.failures,
                "last_error": h.last_error,
                "since": h.since,
                "next_probe_at": h.probe_at,
            })
        })
        .collect();
    let body = serde_json::json!({
        "status": status,
        "database": database,
        "last_tick_at": last_tick_at,
        "last_dispatch_at": (last_dispatch > 0).then_some(last_dispatch),
        "problems": problems,
        "senders": senders,
    });
    (healthy, format!("{body}\n"))
}
