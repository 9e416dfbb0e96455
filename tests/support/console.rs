//! An HTTP client for the webhooks console that behaves like a browser
//! without JavaScript: it keeps the session cookie, posts forms with the
//! CSRF token of the last page, and does not follow redirects (tests read
//! `Location`). Plain `http://` over a raw TCP stream, like [`crate::http_get`].

use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// One answer: status, headers (names in lower case) and the body's bytes.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Page {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The redirect target, for 303 answers.
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    /// The value of the page's first CSRF field.
    pub fn csrf(&self) -> Option<String> {
        let text = self.text();
        let start = text.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        Some(text[start..].split('"').next()?.to_owned())
    }
}

/// A visitor of the console with its own cookie.
pub struct ConsoleClient {
    base: String,
    /// `hookline_session=...` as last set.
    cookie: Option<String>,
    /// The CSRF token of the last page that had one.
    pub csrf: Option<String>,
}

impl ConsoleClient {
    /// A visitor without a session, at `base` (`http://127.0.0.1:port`).
    pub fn new(base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_owned(), cookie: None, csrf: None }
    }

    /// The session cookie as sent (`hookline_session=...`), to give to another client.
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    pub fn set_cookie(&mut self, cookie: Option<String>) {
        self.cookie = cookie;
    }

    fn remember(&mut self, page: &Page) {
        for (k, v) in &page.headers {
            if k == "set-cookie" {
                let pair = v.split(';').next().unwrap_or_default().to_owned();
                self.cookie = if pair.ends_with('=') { None } else { Some(pair) };
            }
        }
        if let Some(csrf) = page.csrf() {
            self.csrf = Some(csrf);
        }
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Page> {
        let page = self.request("GET", path, b"", None).await?;
        self.remember(&page);
        Ok(page)
    }

    /// POST a form with the CSRF token of the last page (unless `fields` has one).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> anyhow::Result<Page> {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf.clone().unwrap_or_default();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            all.push(("csrf", &csrf));
        }
        self.post_exactly(path, &all).await
    }

    /// POST exactly these fields (a forged form, say).
    pub async fn post_exactly(&mut self, path: &str, fields: &[(&str, &str)]) -> anyhow::Result<Page> {
        let body = form_body(fields);
        let page = self.request("POST", path, body.as_bytes(), Some("application/x-www-form-urlencoded")).await?;
        self.remember(&page);
        Ok(page)
    }

    /// Sign in with the operator token; panics unless it worked.
    pub async fn sign_in_operator(&mut self, token: &str) -> anyhow::Result<()> {
        self.get("/signin").await?;
        let page = self.post("/signin", &[("as", "operator"), ("token", token)]).await?;
        if page.status != 303 {
            bail!("operator sign-in answered {}: {}", page.status, page.text());
        }
        Ok(())
    }

    /// Sign in as `tenant` with an API key: the answer (303 when it worked).
    pub async fn sign_in_tenant(&mut self, tenant: &str, key: &str) -> anyhow::Result<Page> {
        self.get("/signin").await?;
        self.post("/signin", &[("as", "tenant"), ("tenant", tenant), ("api_key", key)]).await
    }

    async fn request(&self, method: &str, path: &str, body: &[u8], content_type: Option<&str>) -> anyhow::Result<Page> {
        let authority = self.base.strip_prefix("http://").context("console URL must be http://")?.to_owned();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
        if method != "GET" {
            head += &format!("Content-Length: {}\r\n", body.len());
        }
        if let Some(ct) = content_type {
            head += &format!("Content-Type: {ct}\r\n");
        }
        if let Some(c) = &self.cookie {
            head += &format!("Cookie: {c}\r\n");
        }
        head += "\r\n";
        let exchange = async {
            let mut stream = TcpStream::connect(&authority).await?;
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body).await?;
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf).await?;
            anyhow::Ok(buf)
        };
        let raw = tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .with_context(|| format!("{method} {path}: no answer within 20 s"))??;
        parse(&raw).with_context(|| format!("{method} {path}: unparsable answer"))
    }
}

fn form_body(fields: &[(&str, &str)]) -> String {
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn parse(raw: &[u8]) -> anyhow::Result<Page> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).context("no status")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        let (mut rest, mut decoded) = (&body[..], Vec::new());
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol])?.split(';').next().unwrap_or("").trim(), 16)?;
            let start = eol + 2;
            if size == 0 || start + size > rest.len() {
                break;
            }
            decoded.extend_from_slice(&rest[start..start + size]);
            rest = &rest[(start + size + 2).min(rest.len())..];
        }
        body = decoded;
    }
    Ok(Page { status, headers, body })
}
