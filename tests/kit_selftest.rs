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

/// Ports for peers that start again on them (a killed cluster node) lie
/// below the kernel's ephemeral range, where no port-0 bind or outgoing
/// connection can take them meanwhile, and none is handed out twice.
#[test]
fn free_ports_are_distinct_and_below_the_ephemeral_range() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let ephemeral_from: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    let ports: Vec<u16> = (0..500).map(|_| free_port()).collect();
    assert!(ports.iter().all(|&p| (1_024..ephemeral_from).contains(&p)), "{ports:?} against {range}");
    let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
    assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
}

/// A tiny page server for the browser kit: a labelled form posting back a
/// greeting, a download, and a page that opens an alert.
async fn kit_pages() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    use axum::{
        Router,
        http::header,
        response::{Html, IntoResponse},
        routing::get,
    };
    const FORM: &str = r#"<!doctype html><html lang="en"><title>Kit</title>
        <form method="post" action="/greet">
          <label for="who">Your name</label> <input id="who" name="who" type="text">
          <label><input type="checkbox" name="loud"> Shout</label>
          <button type="submit">Say hello</button>
        </form>
        <a href="/file">Download the file</a>
        <button type="button" aria-label="Close">×</button>"#;
    let app = Router::new()
        .route("/", get(|| async { Html(FORM) }))
        .route(
            "/greet",
            axum::routing::post(|body: Bytes| async move {
                let body = String::from_utf8_lossy(&body).into_owned();
                let who = body.split('&').find_map(|kv| kv.strip_prefix("who=")).unwrap_or("").replace('+', " ");
                let loud = body.split('&').any(|kv| kv.starts_with("loud="));
                let greeting = if loud { format!("HELLO, {}!", who.to_uppercase()) } else { format!("Hello, {who}.") };
                Html(format!("<!doctype html><title>Hi</title><p id=greeting>{greeting}</p>"))
            }),
        )
        .route(
            "/file",
            get(|| async {
                ([(header::CONTENT_DISPOSITION, "attachment; filename=\"kit.bin\"")], KIT_FILE.to_vec()).into_response()
            }),
        )
        .route("/alert", get(|| async { Html("<!doctype html><script>alert('kit says hi')</script>") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    (addr, tx)
}

const KIT_FILE: &[u8] = b"\x00\x01kit bytes \xff\r\n{\"json\": true}\n";

#[tokio::test]
async fn browser_fills_a_form_by_label_clicks_by_name_and_takes_screenshots() {
    use hookline_e2e::browser::{Browser, Key, PHONE_WIDTH, Role};
    let (addr, _stop) = kit_pages().await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&format!("http://{addr}/")).await.unwrap();

    // Names are chromium's computed accessible names, not ids or text matching.
    let close = browser.button("Close").await.unwrap();
    assert_eq!(browser.role_of(&close).await.unwrap(), "button");
    assert_eq!(browser.names(None, Role::Button).await.unwrap(), ["Say hello", "Close"]);
    assert!(browser.has(Role::Link, "Download the file").await.unwrap());
    assert!(!browser.has(Role::Button, "Say goodbye").await.unwrap());
    let err = browser.field("Nickname").await.unwrap_err();
    assert!(format!("{err:#}").contains(r#"["Your name", "Shout"]"#), "{err:#}");

    browser.fill("Your name", "Ada Lovelace").await.unwrap();
    browser.click_button("Say hello").await.unwrap();
    let text = browser.wait_for_text("Hello, Ada Lovelace.").await.unwrap();
    assert_eq!(text, "Hello, Ada Lovelace.");
    assert!(browser.url().await.unwrap().ends_with("/greet"));

    // Keyboard only: Tab to each control, type, Space ticks, Enter submits.
    browser.goto(&format!("http://{addr}/")).await.unwrap();
    assert_eq!(browser.tab_to("Your name", 5).await.unwrap(), 1);
    browser.type_text("Grace").await.unwrap();
    assert_eq!(browser.tab_to("Shout", 5).await.unwrap(), 1);
    browser.press(Key::Space).await.unwrap();
    assert!(browser.field("Shout").await.unwrap().is_selected().await.unwrap());
    assert_eq!(browser.tab_to("Say hello", 5).await.unwrap(), 1);
    browser.press(Key::Enter).await.unwrap();
    browser.wait_for_text("HELLO, GRACE!").await.unwrap();
    let err = browser.tab_to("Nowhere", 3).await.unwrap_err();
    assert!(format!("{err:#}").contains("focus went through"), "{err:#}");

    // Screenshots are PNGs of the page at the asked width.
    let wide = browser.screenshot("kit-selftest-1280").await.unwrap();
    browser.set_width(PHONE_WIDTH).await.unwrap();
    let narrow = browser.screenshot("kit-selftest-390").await.unwrap();
    for (path, width) in [(wide, 1280u32), (narrow, 390)] {
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
        let png_width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        assert_eq!(png_width, width, "{}", path.display());
    }
}

#[tokio::test]
async fn browser_downloads_byte_identical_files_and_sees_alerts_and_other_origins() {
    use hookline_e2e::browser::Browser;
    let (addr, _stop) = kit_pages().await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&format!("http://{addr}/")).await.unwrap();
    assert_eq!(browser.alert_text().await.unwrap(), None);
    browser.click_link("Download the file").await.unwrap();
    let (path, bytes) = browser.downloaded(Duration::from_secs(10)).await.unwrap();
    assert_eq!(path.file_name().unwrap(), "kit.bin");
    assert_eq!(bytes, KIT_FILE);

    browser.goto(&format!("http://{addr}/alert")).await.unwrap();
    assert_eq!(browser.alert_text().await.unwrap().as_deref(), Some("kit says hi"));
    browser.accept_alert().await.unwrap();
    assert_eq!(browser.alert_text().await.unwrap(), None);

    // *.test names reach loopback: a second origin for frame and CSRF tests.
    browser.goto(&format!("http://partner.test:{}/", addr.port())).await.unwrap();
    browser.field("Your name").await.unwrap();
    let origin: String = browser.script("return location.origin", vec![]).await.unwrap();
    assert_eq!(origin, format!("http://partner.test:{}", addr.port()));
}

/// The premise of the portal tests: headless chromium keeps a
/// `SameSite=None; Secure; Partitioned` cookie from `http://localhost` inside
/// another site's iframe (without `Partitioned` it is a blocked third-party
/// cookie), names controls inside such a frame, and refuses the frame
/// (`chrome-error://`) when CSP `frame-ancestors` does not list the
/// embedding origin.
#[tokio::test]
async fn browser_keeps_embedded_localhost_cookies_and_obeys_frame_ancestors() {
    use axum::{
        Router,
        http::{HeaderMap, header},
        response::Html,
        routing::get,
    };
    use hookline_e2e::browser::Browser;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let partner = format!("http://partner.test:{port}");
    let csp = format!("frame-ancestors {partner}");
    let app = Router::new()
        .route(
            "/embedded",
            get(move || {
                let csp = csp.clone();
                async move {
                    (
                        [
                            (
                                header::SET_COOKIE,
                                "kit=yes; Path=/; HttpOnly; SameSite=None; Secure; Partitioned".to_owned(),
                            ),
                            (header::CONTENT_SECURITY_POLICY, csp),
                        ],
                        Html("<!doctype html><a href=/check>Check</a>"),
                    )
                }
            }),
        )
        .route(
            "/check",
            get(|headers: HeaderMap| async move {
                let cookie = headers.get(header::COOKIE).and_then(|c| c.to_str().ok()).unwrap_or("none").to_owned();
                Html(format!("<!doctype html><p>cookie: {cookie}</p>"))
            }),
        )
        .fallback(move || async move {
            Html(format!(
                "<!doctype html><iframe src=\"http://localhost:{port}/embedded\" title=\"Embedded\"></iframe>"
            ))
        });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let browser = Browser::start().await.unwrap();
    browser.goto(&format!("{partner}/")).await.unwrap();
    browser.enter_frame(0).await.unwrap();
    browser.click_link("Check").await.unwrap();
    browser.wait_for_text("cookie: kit=yes").await.unwrap();
    browser.leave_frames().await.unwrap();

    browser.goto(&format!("http://stranger.test:{port}/")).await.unwrap();
    browser.enter_frame(0).await.unwrap();
    let url: String = browser.script("return document.URL", vec![]).await.unwrap();
    assert!(url.starts_with("chrome-error://"), "the refused frame shows {url}");
    assert!(!browser.has(hookline_e2e::browser::Role::Link, "Check").await.unwrap());
}
