//! `recall bench dispatch`: the dispatcher's throughput, measured.
//!
//! Not a test: it prints figures. It queues N messages in a fresh database,
//! starts a minimal HTTP/1.1 server in this process that accepts every
//! request (a provider with no latency and no limits), and dispatches
//! everything through a real `webhook` sender built from a real
//! `recall.toml`, with the real claim, group commit and `synchronous=FULL`.
//! It reports messages per second and the process's peak resident memory
//! after the first 10% of the messages and at the end: a flat figure means
//! memory does not grow with the number of messages sent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::base::clock::Clock;
use crate::base::content::Content;
use crate::base::model::{Channel, Pool};
use crate::bench::{peak_memory_kib, reset_peak_memory};
use crate::dispatch::DispatchReport;
use crate::store::Store;
use crate::store::shared::SharedStore;
use crate::store::ticks::{NewMessage, TickBatch, TickStart};

#[derive(Debug, Args)]
pub struct DispatchArgs {
    /// Messages to queue and send.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Messages per customer (customers = messages / this).
    #[arg(long, default_value_t = 5)]
    pub per_customer: usize,
    /// `[dispatch] batch_size` for the run.
    #[arg(long, default_value_t = 500)]
    pub batch_size: u32,
    /// `[dispatch] concurrency` for the run (default: recall's default).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Folder for the benchmark clinic (emptied first).
    #[arg(long, default_value = "target/bench-dispatch")]
    pub dir: PathBuf,
}

fn bench_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default()
}

pub fn run(args: &DispatchArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: &DispatchArgs) -> Result<()> {
    let (port, received) = provider().await?;
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let config_path = write_config(&args.dir, port, args)?;
    let config = crate::config::load(&config_path)
        .map_err(|report| anyhow::anyhow!("bench config: {report}"))?;

    let started = Instant::now();
    let mut store = Store::create(&config.database)?;
    queue(&mut store, args)?;
    println!(
        "queued {} messages for {} customers in {:.1} s",
        args.messages,
        args.messages / args.per_customer.max(1),
        started.elapsed().as_secs_f64()
    );

    let dispatcher = crate::senders::dispatcher(&config)?;
    let store: SharedStore = Arc::new(std::sync::Mutex::new(store));
    let clock = Clock::Fixed(bench_now());
    reset_peak_memory();
    let started = Instant::now();
    let mut total = DispatchReport::default();
    let checkpoint = (args.messages / 10).max(1);
    let mut early: Option<(usize, u64, f64)> = None;
    loop {
        let round = dispatcher.round(&store, clock, &|| false).await?;
        if round.claimed == 0 {
            break;
        }
        total.sent += round.sent;
        total.failed += round.failed;
        total.retried += round.retried;
        if early.is_none() && total.sent >= checkpoint {
            early = Some((
                total.sent,
                peak_memory_kib().unwrap_or(0),
                started.elapsed().as_secs_f64(),
            ));
        }
    }
    let took = started.elapsed().as_secs_f64();
    let peak = peak_memory_kib().unwrap_or(0);
    let commits = store
        .lock()
        .map_err(|_| anyhow::anyhow!("store lock poisoned"))?
        .status(bench_now().timestamp())?;
    let sent_in_db: i64 = commits
        .outreach
        .iter()
        .filter(|(_, s, _)| s.as_str() == "sent")
        .map(|(_, _, n)| n)
        .sum();
    println!(
        "dispatched {} messages in {took:.2} s: {:.0} messages/s ({} failed, {} to retry; {} requests reached the provider, {sent_in_db} sent in the database)",
        total.sent,
        total.sent as f64 / took,
        total.failed,
        total.retried,
        received.load(Ordering::Relaxed),
    );
    if let Some((n, kib, at)) = early {
        println!(
            "peak memory after {n} messages ({at:.1} s): {:.1} MB",
            kib as f64 / 1024.0
        );
    }
    println!(
        "peak memory after {} messages: {:.1} MB",
        total.sent,
        peak as f64 / 1024.0
    );
    anyhow::ensure!(
        total.sent == args.messages,
        "only {} of {} messages were sent",
        total.sent,
        args.messages
    );
    Ok(())
}

fn write_config(dir: &Path, port: u16, args: &DispatchArgs) -> Result<PathBuf> {
    let concurrency = args
        .concurrency
        .map(|c| format!("concurrency = {c}\n"))
        .unwrap_or_default();
    let text = format!(
        r#"[clinic]
name = "bench"

[dispatch]
batch_size = {batch}
{concurrency}
[senders.gateway]
kind = "webhook"
url = "http://127.0.0.1:{port}/send"
body = '''{{"to": {{{{ address }}}}, "text": {{{{ content }}}}, "ref": {{{{ id }}}}}}'''

[channels.sms]
sender = "gateway"
"#,
        batch = args.batch_size,
    );
    let path = dir.join("recall.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Customers with a phone number, and `messages` queued SMS, due now.
fn queue(store: &mut Store, args: &DispatchArgs) -> Result<()> {
    let now = bench_now().timestamp();
    let clinic = store.ensure_clinic("main", "bench", "Asia/Shanghai", 0)?;
    let per = args.per_customer.max(1);
    let customers = args.messages.div_ceil(per);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut ingest = store.ingest()?;
    for i in 0..customers {
        let mut person = crate::demo::person(&mut rng, i);
        person.phone = Some(format!("139{:08}", i));
        person.consent = crate::store::ingest::Consent::default();
        person.do_not_contact = false;
        ingest.add_customer(clinic, &person, now - 86_400)?;
    }
    ingest.commit()?;
    let tick = match store.begin_tick(now - 60, now - 60, |t| t.to_string())? {
        TickStart::New(tick) | TickStart::Resume(tick) => tick,
        other => anyhow::bail!("unexpected tick state {other:?}"),
    };
    let mut left = args.messages;
    let mut batch = TickBatch::default();
    for customer in 1..=customers as i64 {
        for action in 0..per.min(left) {
            batch.messages.push(NewMessage {
                customer_id: customer,
                rule_id: "bench".into(),
                action_index: action as i64,
                pool: Pool::Warning,
                channel: Channel::Sms,
                template: "warning_offer".into(),
                content: Content::text("您好，好久不见，本月到院护理享九折。回T退订"),
                fallback: None,
                due_at: now - 60,
                failure: None,
                held_out: false,
                attribution_days: 30,
                expires_at: None,
                assign_to: None,
                cancel_if_stale: false,
            });
        }
        left = left.saturating_sub(per);
        if batch.messages.len() >= 10_000 || left == 0 {
            batch.cursor = customer;
            store
                .commit_batch(&tick, &batch)
                .context("queueing messages")?;
            batch = TickBatch::default();
        }
        if left == 0 {
            break;
        }
    }
    store.finish_tick(tick.id, now)?;
    Ok(())
}

/// A provider on 127.0.0.1 that answers every request at once with a
/// message id: HTTP/1.1 with keep-alive, just enough for reqwest. Returns
/// its port and the count of requests it answered.
async fn provider() -> Result<(u16, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::with_capacity(4096);
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: headers, then Content-Length bytes.
                    let (head_end, length) = loop {
                        if let Some(end) = find(&buffer, b"\r\n\r\n") {
                            break (end + 4, content_length(&buffer[..end]));
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buffer.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buffer.drain(..head_end + length);
                    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    let body = format!("{{\"msgid\":\"m{n}\"}}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((port, received))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}
