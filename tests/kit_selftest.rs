//! Self-test of the e2e kit against real peers; needs no `hookline` binary.

use std::time::{Duration, Instant};

use hookline_e2e::*;

#[tokio::test]
async fn nats_server_serves_jetstream_and_keeps_its_store_across_restart() {
    let mut nats = NatsServer::start().unwrap();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
    let js = nats.jetstream().await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "KIT".into(),
        subjects: vec!["kit.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let ack = js.publish("kit.one", "hello".into()).await.unwrap().await.unwrap();
    assert_eq!((ack.stream.as_str(), ack.sequence, ack.duplicate), ("KIT", 1, false));

    let port = nats.port();
    nats.kill();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "killed server still listens");
    nats.restart().unwrap();
    assert_eq!(nats.port(), port);
    let stream = nats.jetstream().await.get_stream("KIT").await.unwrap();
    let msg = stream.get_raw_message(1).await.unwrap();
    assert_eq!((msg.subject.as_str(), &msg.payload[..]), ("kit.one", &b"hello"[..]));
    assert!(std::fs::read_to_string(nats.log_path()).unwrap().contains("Server is ready"));
}

#[tokio::test]
async fn test_db_is_fresh_and_dropped_afterwards() {
    let db = TestDb::create().await.unwrap();
    let name = db.name().to_owned();
    assert!(name.starts_with("hookline_test_") && db.url().ends_with(&name));
    let pool = db.pool().await;
    let (one, current): (i32, String) = sqlx::query_as("SELECT 1, current_database()").fetch_one(&pool).await.unwrap();
    assert_eq!((one, current.as_str()), (1, name.as_str()));
    drop(db); // FORCE disconnects the open pool
    let admin = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(left, 0, "{name} was not dropped");
}

#[tokio::test]
async fn receiver_follows_its_script_then_the_default_and_records_everything() {
    let receiver = Receiver::with_script(vec![Reply::new(500), Reply::new(500)]).await;
    let url = receiver.url();
    assert_eq!(url, format!("http://{}/hook", receiver.addr()));
    let mut statuses = Vec::new();
    for i in 0..3 {
        let body = format!(r#"{{"n":{i}}}"#);
        statuses.push(
            http_post(&url, &[("X-Kit", "Yes"), ("Content-Type", "application/json")], body.as_bytes())
                .await
                .unwrap()
                .0,
        );
    }
    assert_eq!(statuses, [500, 500, 200]);

    receiver.set_default(204);
    assert_eq!(http_post(&format!("http://{}/other/path", receiver.addr()), &[], b"x").await.unwrap().0, 204);
    receiver.script([Reply { status: 503, delay: Duration::from_millis(300) }]);
    let t = Instant::now();
    assert_eq!(http_get(&url).await.unwrap().0, 503);
    assert!(t.elapsed() >= Duration::from_millis(300));

    let got = receiver.wait_for(5, Duration::from_secs(1)).await.unwrap();
    assert_eq!(receiver.count(), 5);
    assert_eq!(got.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 500, 200, 204, 503]);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/hook");
    assert_eq!(got[0].header("x-kit"), Some("Yes"), "names lower-cased, values kept");
    assert_eq!(got[2].json().unwrap()["n"], 2);
    assert_eq!(&got[3].path, "/other/path");
    assert_eq!(&got[3].body[..], b"x");
    assert_eq!(got[4].method, "GET");
    assert!(got.windows(2).all(|w| w[0].received_at <= w[1].received_at));

    let err = receiver.wait_for(6, Duration::from_millis(200)).await.unwrap_err();
    assert!(format!("{err:#}").contains("only 5 arrived"), "{err:#}");

    let addr = receiver.addr();
    drop(receiver);
    eventually(Duration::from_secs(5), "receiver to stop listening", || async {
        tokio::net::TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn recorded_requests_verify_standard_webhook_signatures() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    let headers = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
    ];
    let (id, ts, sig) = (headers[0].1, headers[1].1, headers[2].1);
    assert!(verify_standard_webhook(SECRET, id, ts, BODY, sig));
    assert!(!verify_standard_webhook(SECRET, id, ts, br#"{"test": 2432232315}"#, sig));

    let receiver = Receiver::start().await;
    http_post(&receiver.url(), &headers, BODY).await.unwrap();
    http_post(&receiver.url(), &headers[..2], BODY).await.unwrap();
    let got = receiver.wait_for(2, Duration::from_secs(1)).await.unwrap();
    assert!(got[0].verify(SECRET));
    assert!(!got[0].verify("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    assert!(!got[1].verify(SECRET), "no signature header, no verification");
}

#[tokio::test]
async fn eventually_polls_options_and_results_and_reports_timeouts() {
    let start = Instant::now();
    let v = eventually(Duration::from_secs(2), "120 ms", || async {
        (start.elapsed() > Duration::from_millis(120)).then_some(7)
    })
    .await
    .unwrap();
    assert_eq!(v, 7);
    let v = eventually(Duration::from_secs(1), "ok", || async { Ok(Some("x")) }).await.unwrap();
    assert_eq!(v, "x");
    let err = eventually(Duration::from_millis(100), "never", || async { None::<()> }).await.unwrap_err();
    assert!(err.to_string().contains("waiting for never"), "{err}");
    let err = eventually(Duration::from_secs(1), "fails", || async {
        anyhow::Result::<Option<()>>::Err(anyhow::anyhow!("boom"))
    })
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert_ne!(free_port(), 0);
}
