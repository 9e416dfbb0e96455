//! `hookline-bench log`: delivery-log pages and 30-day statistics on a
//! database filled with one endpoint's deliveries, beside `SELECT 1`; then
//! the console's endpoint view (see [`view`]), rendered by `hookline console`
//! over gRPC from `hookline delivery` on the same database, as a browser
//! fetches it, beside the gRPC calls it makes and the console's `/healthz`.

mod view;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chrono::{TimeDelta, Utc};
use hookline_domain::ids::{DeliveryId, EndpointId, TenantId};
use hookline_store::queries::{DeliveryFilter, endpoint_stats, list_deliveries};
use serde_json::json;
use sqlx::PgPool;

use crate::{
    report::{Percentiles, Report, Row, percentiles},
    stack::Stack,
};

#[derive(clap::Args)]
pub struct Args {
    /// Rows in `deliveries`, all for one endpoint, spread over 30 days.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Timed iterations per query and per console view.
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Smoke run: at most 100,000 rows.
    #[arg(long)]
    quick: bool,
}

/// Rows of a `--quick` run.
const QUICK_ROWS: usize = 100_000;
/// The console's endpoint view, every variant, at p99: the target the page is held to.
const VIEW_TARGET_MS: f64 = 50.0;

const TENANT: &str = "bench";
const CHUNK: usize = 50_000;
const PAGE: u32 = 50;
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `prefix` + 26 Crockford base32 characters over 48 bits of milliseconds and
/// 80 random bits: the layout of `hookline_domain::ids`, at a chosen time.
fn sortable_id(prefix: &str, millis: i64) -> String {
    let random: [u8; 10] = rand::random();
    let mut n = (millis.max(0) as u128) << 80;
    for (i, b) in random.iter().enumerate() {
        n |= (*b as u128) << (8 * (9 - i));
    }
    let suffix: String = (0..26).rev().map(|i| CROCKFORD[((n >> (i * 5)) & 31) as usize] as char).collect();
    format!("{prefix}{suffix}")
}

const INSERT_DELIVERIES: &str = "
INSERT INTO deliveries (id, tenant_id, endpoint_id, event_id, event_type, event_seq, created_at, last_attempt_at,
                        attempt_count, last_status_code, last_error_kind, state, archived_at, test)
SELECT u.id, $1, $2, u.event_id, 'appointment.booking.created', u.seq, u.at, u.at + interval '120 ms',
       CASE WHEN u.code = 200 THEN 1 ELSE 10 END, u.code,
       CASE WHEN u.code = 200 THEN NULL ELSE 'http_status' END,
       CASE WHEN u.seq <= $8 THEN 'archived' WHEN u.code = 200 THEN 'succeeded' ELSE 'failed' END,
       CASE WHEN u.seq <= $8 THEN now() END,
       u.seq % 1000 = 0
FROM UNNEST($3::text[], $4::text[], $5::int8[], $6::timestamptz[], $7::int4[]) AS u(id, event_id, seq, at, code)";

const INSERT_STATS: &str = "
INSERT INTO endpoint_stats_hourly (endpoint_id, tenant_id, hour, attempts, accepted, status_2xx, status_3xx,
                                   status_4xx, status_5xx, errors, latency)
SELECT $1, $2, date_trunc('hour', now()) - make_interval(hours => h), 1000, 990, 990, 0, 4, 6,
       '{\"http_status\": 10, \"timeout\": 2}'::jsonb, array_fill(50::bigint, ARRAY[$3::int])
FROM generate_series(0, 30 * 24 - 1) AS h";

/// Fill `rows` deliveries evenly over the last 30 days (1 % failed, every
/// 1000th a test event, the oldest 2 % archived), in chunks of 50,000, plus
/// 30 x 24 hourly statistics rows. The archived rows stand for the part of a
/// longer log that the janitor has archived: the oldest rows, so a filter on
/// them reaches the far end of the endpoint's log.
async fn fill(pool: &PgPool, endpoint: &str, rows: usize) -> anyhow::Result<()> {
    let now = Utc::now().timestamp_millis();
    let span = TimeDelta::days(30).num_milliseconds();
    let start = now - span;
    let archived = (rows / 50) as i64;
    for chunk in (0..rows).step_by(CHUNK) {
        let range = chunk..rows.min(chunk + CHUNK);
        let millis: Vec<i64> =
            range.clone().map(|i| start + (i as i128 * span as i128 / rows as i128) as i64).collect();
        let ids: Vec<String> = millis.iter().map(|&m| sortable_id("dlv_", m)).collect();
        let events: Vec<String> = millis.iter().map(|&m| sortable_id("evt_", m)).collect();
        let seqs: Vec<i64> = range.clone().map(|i| i as i64 + 1).collect();
        let at: Vec<chrono::DateTime<Utc>> =
            millis.iter().map(|&m| chrono::DateTime::from_timestamp_millis(m).expect("in range")).collect();
        let codes: Vec<i32> = range.map(|i| if i % 100 == 99 { 500 } else { 200 }).collect();
        sqlx::query(INSERT_DELIVERIES)
            .bind(TENANT)
            .bind(endpoint)
            .bind(ids)
            .bind(events)
            .bind(seqs)
            .bind(at)
            .bind(codes)
            .bind(archived)
            .execute(pool)
            .await?;
    }
    let buckets = hookline_store::stats::BUCKETS as i32;
    sqlx::query(INSERT_STATS).bind(endpoint).bind(TENANT).bind(buckets).execute(pool).await?;
    sqlx::query("ANALYZE deliveries, endpoint_stats_hourly").execute(pool).await?;
    Ok(())
}

/// Time `iterations` calls after 10 untimed ones.
async fn time<F, Fut, T>(iterations: usize, mut f: F) -> anyhow::Result<Percentiles>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    for _ in 0..10 {
        f().await?;
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t0 = Instant::now();
        f().await?;
        samples.push(t0.elapsed());
    }
    Ok(percentiles(&mut samples))
}

pub async fn run(args: Args, postgres: &str) -> anyhow::Result<Report> {
    let mut stack = Stack::start(postgres, &[]).await?;
    let result = measure(&args, &mut stack).await;
    stack.finish().await?;
    result
}

/// The tenant and its endpoint, created through the API so the services
/// and the console know them; the rows are then written straight to Postgres.
async fn create_endpoint(stack: &Stack) -> anyhow::Result<EndpointId> {
    use hookline_proto::subscriptions::v1::{self as spb, subscription_service_client::SubscriptionServiceClient};
    let url = stack.services.iter().find(|s| s.role == "subscriptions").map(|s| s.grpc_url.clone());
    let mut c = SubscriptionServiceClient::connect(url.unwrap_or_default()).await?;
    c.create_tenant(spb::CreateTenantRequest {
        tenant_id: TENANT.into(),
        plan: spb::Plan::Basic.into(),
        webhooks_enabled: true,
        ..Default::default()
    })
    .await?;
    let e = c
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: TENANT.into(),
            url: "https://erp.example.com/webhooks?code=bench".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(EndpointId::parse(&e.id)?)
}

async fn measure(args: &Args, stack: &mut Stack) -> anyhow::Result<Report> {
    let url = stack.database_url().context("the stack has no database")?.to_owned();
    let pool = hookline_store::connect(&url).await?;
    let endpoint_id = create_endpoint(stack).await?;
    let endpoint = endpoint_id.to_string();
    let rows = if args.quick { args.rows.min(QUICK_ROWS) } else { args.rows };
    println!("filling {rows} deliveries and {} hourly stats rows ...", 30 * 24);
    let t0 = Instant::now();
    fill(&pool, &endpoint, rows).await?;
    let fill_secs = t0.elapsed().as_secs_f64();
    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_total_relation_size('deliveries'))").fetch_one(&pool).await?;
    println!("  filled in {fill_secs:.1} s; deliveries table with indexes: {size}");

    let n = args.iterations;
    let tenant = TenantId::parse(TENANT)?;
    let filter = DeliveryFilter::default();
    let select1 = time(n, || async { Ok(sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&pool).await?) }).await?;
    let first =
        time(n, || async { Ok(list_deliveries(&pool, &tenant, Some(&endpoint_id), &filter, PAGE, None).await?) })
            .await?;
    // The cursor of page 100: the id of the last row of page 99.
    let cursor: DeliveryId = sqlx::query_scalar::<_, String>(
        "SELECT id FROM deliveries WHERE endpoint_id = $1 ORDER BY id DESC OFFSET $2 LIMIT 1",
    )
    .bind(&endpoint)
    .bind(i64::from(PAGE) * 99 - 1)
    .fetch_one(&pool)
    .await?
    .parse()?;
    let page100 = time(n, || async {
        let page = list_deliveries(&pool, &tenant, Some(&endpoint_id), &filter, PAGE, Some(&cursor)).await?;
        anyhow::ensure!(page.rows.len() == PAGE as usize, "page 100 has {} rows", page.rows.len());
        Ok(page)
    })
    .await?;
    let since = Utc::now() - TimeDelta::days(30);
    let stats = time(n, || async {
        let s = endpoint_stats(&pool, &tenant, &endpoint_id, since).await?;
        anyhow::ensure!(s.attempts > 0, "no statistics");
        Ok(s)
    })
    .await?;
    pool.close().await;

    let console = view::measure(stack, TENANT, &endpoint, n).await?;

    let params = json!({
        "rows": rows, "iterations": n, "page": PAGE, "console_page": view::CONSOLE_PAGE, "quick": args.quick,
    });
    let mut report = Report::new("hookline-bench log", params);
    for (name, p, target) in [
        ("first page (50 rows)", &first, 20.0),
        ("page 100 (50 rows, keyset)", &page100, 20.0),
        ("30-day endpoint stats (720 hours)", &stats, 50.0),
    ] {
        report.push(Row::new(format!("{name} p50"), p.p50, "ms").beside(select1.p50));
        report.push(
            Row::new(format!("{name} p99"), p.p99, "ms")
                .beside(select1.p99)
                .target(format!("< {target} ms"), p.p99 < target),
        );
    }
    // The console's pages beside their gRPC service time.
    for v in &console.views {
        let name = format!("console endpoint view, {}", v.name);
        report.push(Row::new(format!("{name} p50"), v.page.p50, "ms").beside(v.service.p50));
        report.push(
            Row::new(format!("{name} p99"), v.page.p99, "ms")
                .beside(v.service.p99)
                .target(format!("< {VIEW_TARGET_MS} ms"), v.page.p99 < VIEW_TARGET_MS),
        );
    }
    report.push(Row::new("console /healthz p50", console.healthz.p50, "ms"));
    report.push(Row::new("console /healthz p99", console.healthz.p99, "ms"));
    report.push(Row::new("  fill rate (INSERT ... UNNEST, 50,000 per chunk)", rows as f64 / fill_secs, "/s"));
    report.notes.push(format!(
        "baseline of the query rows = SELECT 1 round trip on the same pool (p50 {:.2} ms, p99 {:.2} ms); \
         deliveries table {size}",
        select1.p50, select1.p99
    ));
    report.notes.push(format!(
        "console rows: GET of the page ({} log rows) by a signed-in operator, body read, through hookline console \
         -> gRPC -> delivery -> Postgres; baseline = the view's gRPC calls from the bench (GetEndpoint, ListDeliveries, \
         GetEndpointStats for 24 h, 7 d, 30 d: service time); the rest is the console's HTTP, session and rendering",
        view::CONSOLE_PAGE
    ));
    Ok(report)
}
