//! A real browser for page tests: Debian's headless `chromium` driven over
//! WebDriver by a private `chromedriver` (both installed by `scripts/test.sh`).
//!
//! Each [`Browser`] owns its own `chromedriver` on a free loopback port, its own
//! chromium profile and download directory, and kills both (the whole process
//! group) on drop, so tests run in parallel without sharing anything.
//!
//! Tests find controls the way a person using assistive technology does: by
//! role and accessible name ([`Browser::button`], [`Browser::field`],
//! [`Browser::link`]), computed by chromium itself (WebDriver "Get Computed
//! Label"), so a lookup passing is also proof that the control is named in the
//! product's words. Every lookup waits (default 10 s) instead of sleeping.
//! Script execution ([`Browser::script`]) is for reading state in assertions,
//! never for driving the page.

use std::{
    fmt,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use fantoccini::{
    Client, ClientBuilder,
    actions::{InputSource as _, KeyAction, KeyActions},
    error::CmdError,
    wd::WebDriverCompatibleCommand,
};
pub use fantoccini::{Locator, elements::Element, key::Key};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::{eventually, free_port, tail, temp_dir};

/// How long lookups and waits take before they fail.
pub const WAIT: Duration = Duration::from_secs(10);

/// Desktop and phone widths the screenshots are taken at.
pub const DESKTOP_WIDTH: u32 = 1280;
pub const PHONE_WIDTH: u32 = 390;
const HEIGHT: u32 = 900;

const FIELD_ROLES: [Role; 5] = [Role::TextBox, Role::CheckBox, Role::Switch, Role::Radio, Role::ComboBox];

/// Host names under `.test` resolve to 127.0.0.1 inside the browser, so a test
/// can serve a page from another origin (`http://partner.test:<port>`) without DNS.
pub const TEST_DOMAIN: &str = "test";

/// A role, as chromium computes it for the accessibility tree, with the HTML
/// elements that can carry it (the candidates a lookup asks names of).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Button,
    Link,
    /// Text, number and date inputs, and text areas.
    TextBox,
    CheckBox,
    /// A checkbox styled as an on/off switch (`role="switch"`).
    Switch,
    Radio,
    /// `<select>`.
    ComboBox,
    /// A named landmark or group: a section, form, fieldset or navigation,
    /// for scoping lookups (`find_within`, `field_within`).
    Region,
    /// Any element with a computed name: headings, table cells, statuses.
    Any,
}

impl Role {
    fn css(self) -> &'static str {
        match self {
            Role::Button => {
                "button, input[type=submit], input[type=button], input[type=reset], input[type=image], [role=button], summary"
            }
            Role::Link => "a[href], [role=link]",
            Role::TextBox => {
                "input:not([type]), input[type=text], input[type=url], input[type=email], input[type=password], \
                 input[type=search], input[type=number], input[type=tel], input[type=date], textarea, [role=textbox]"
            }
            Role::CheckBox => "input[type=checkbox], [role=checkbox]",
            Role::Switch => "[role=switch]",
            Role::Radio => "input[type=radio], [role=radio]",
            Role::ComboBox => "select, [role=combobox]",
            Role::Region => {
                "section, [role=region], [role=search], [role=form], form, fieldset, nav, main, aside, table"
            }
            Role::Any => "body *",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A headless chromium session on a private chromedriver; see the module docs.
pub struct Browser {
    client: Client,
    driver: Child,
    /// Profile, downloads and the chromedriver log.
    dir: PathBuf,
    shots: PathBuf,
}

impl Browser {
    /// Start chromedriver on a free port and open a session (1280×900).
    pub async fn start() -> anyhow::Result<Self> {
        let dir = temp_dir("hookline-browser");
        let downloads = dir.join("downloads");
        std::fs::create_dir_all(&downloads)?;
        let log = dir.join("chromedriver.log");
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port();
            let mut driver = spawn_chromedriver(port, &log)?;
            match wait_driver_ready(port, &mut driver).await {
                Ok(()) => {
                    // A driver that answered its status and then dropped the
                    // session request (seen with several browsers starting at
                    // once) is started again on another port, like one that
                    // never answered.
                    let client = match connect(port, &dir, &downloads).await {
                        Ok(c) => c,
                        Err(e) => {
                            kill_group(&mut driver);
                            last_error = Some(e);
                            continue;
                        }
                    };
                    let shots = std::env::temp_dir().join("hookline-screenshots");
                    std::fs::create_dir_all(&shots)?;
                    let browser = Self { client, driver, dir, shots };
                    browser.set_width(DESKTOP_WIDTH).await?;
                    return Ok(browser);
                }
                Err(e) => {
                    kill_group(&mut driver);
                    last_error = Some(e);
                }
            }
        }
        let e = last_error.expect("three attempts");
        bail!("chromedriver did not start or open a session, three times: {e:#}\n{}", tail(&log, 30))
    }

    /// The WebDriver client, for anything the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Where downloads land.
    pub fn download_dir(&self) -> PathBuf {
        self.dir.join("downloads")
    }

    /// Navigate and wait for the page load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client.goto(url).await.with_context(|| format!("opening {url}"))
    }

    /// The address of the page shown now.
    pub async fn url(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// The current DOM serialised (what "view source" of the live page shows).
    pub async fn source(&self) -> anyhow::Result<String> {
        Ok(self.client.source().await?)
    }

    /// The visible text of the whole page.
    pub async fn text(&self) -> anyhow::Result<String> {
        Ok(self.client.find(Locator::Css("body")).await?.text().await?)
    }

    /// Wait until the page's visible text contains `needle`; returns the text.
    pub async fn wait_for_text(&self, needle: &str) -> anyhow::Result<String> {
        self.wait_for_text_within(needle, WAIT).await
    }

    /// [`wait_for_text`](Self::wait_for_text) with its own timeout.
    pub async fn wait_for_text_within(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let what = format!("page text to contain {needle:?}");
        let found =
            eventually(timeout, &what, || async { self.text().await.ok().filter(|t| t.contains(needle)) }).await;
        match found {
            Ok(text) => Ok(text),
            Err(e) => bail!(
                "{e}; the page ({}) says:\n{}",
                self.url().await.unwrap_or_default(),
                self.text().await.unwrap_or_default()
            ),
        }
    }

    /// Wait for the first element matching a CSS selector.
    pub async fn css(&self, selector: &str) -> anyhow::Result<Element> {
        match self.client.wait().at_most(WAIT).for_element(Locator::Css(selector)).await {
            Ok(el) => Ok(el),
            Err(e) => bail!("no element matches {selector:?} on {}: {e}", self.url().await.unwrap_or_default()),
        }
    }

    /// Every element matching a CSS selector now (no waiting).
    pub async fn css_all(&self, selector: &str) -> anyhow::Result<Vec<Element>> {
        Ok(self.client.find_all(Locator::Css(selector)).await?)
    }

    /// Wait for a displayed element of `role` whose accessible name is `name`.
    pub async fn find(&self, role: Role, name: &str) -> anyhow::Result<Element> {
        self.find_in(None, role, name).await
    }

    /// [`find`](Self::find) inside `scope` (a table row, a form, a dialog).
    pub async fn find_within(&self, scope: &Element, role: Role, name: &str) -> anyhow::Result<Element> {
        self.find_in(Some(scope), role, name).await
    }

    async fn find_in(&self, scope: Option<&Element>, role: Role, name: &str) -> anyhow::Result<Element> {
        let what = format!("a {role} named {name:?}");
        let found = eventually(WAIT, &what, || async {
            for el in self.candidates(scope, role).await.unwrap_or_default() {
                if self.name_of(&el).await.is_ok_and(|n| n == name) && el.is_displayed().await.unwrap_or(false) {
                    return Some(el);
                }
            }
            None
        })
        .await;
        match found {
            Ok(el) => Ok(el),
            Err(e) => {
                let names = self.names(scope, role).await.unwrap_or_default();
                bail!("{e} on {}; the {role} names there: {names:?}", self.url().await.unwrap_or_default())
            }
        }
    }

    /// Whether a displayed element of `role` named `name` is on the page now (no waiting).
    pub async fn has(&self, role: Role, name: &str) -> anyhow::Result<bool> {
        for el in self.candidates(None, role).await? {
            if self.name_of(&el).await? == name && el.is_displayed().await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The accessible names of every displayed element of `role` (in `scope`), in page order.
    pub async fn names(&self, scope: Option<&Element>, role: Role) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for el in self.candidates(scope, role).await? {
            if el.is_displayed().await? {
                names.push(self.name_of(&el).await?);
            }
        }
        Ok(names)
    }

    async fn candidates(&self, scope: Option<&Element>, role: Role) -> Result<Vec<Element>, CmdError> {
        match scope {
            Some(s) => s.find_all(Locator::Css(role.css())).await,
            None => self.client.find_all(Locator::Css(role.css())).await,
        }
    }

    /// A button by accessible name.
    pub async fn button(&self, name: &str) -> anyhow::Result<Element> {
        self.find(Role::Button, name).await
    }

    /// A link by accessible name.
    pub async fn link(&self, name: &str) -> anyhow::Result<Element> {
        self.find(Role::Link, name).await
    }

    /// A form field (text box, checkbox, switch, radio or select) by its
    /// accessible name, which for a labelled input is its label's text.
    pub async fn field(&self, label: &str) -> anyhow::Result<Element> {
        self.field_in(None, label).await
    }

    /// [`field`](Self::field) inside `scope`, where a page has two fields of one name.
    pub async fn field_within(&self, scope: &Element, label: &str) -> anyhow::Result<Element> {
        self.field_in(Some(scope), label).await
    }

    async fn field_in(&self, scope: Option<&Element>, label: &str) -> anyhow::Result<Element> {
        let what = format!("a field labelled {label:?}");
        let found = eventually(WAIT, &what, || async {
            for role in FIELD_ROLES {
                for el in self.candidates(scope, role).await.unwrap_or_default() {
                    if self.name_of(&el).await.is_ok_and(|n| n == label) && el.is_displayed().await.unwrap_or(false) {
                        return Some(el);
                    }
                }
            }
            None
        })
        .await;
        match found {
            Ok(el) => Ok(el),
            Err(e) => {
                let mut names = Vec::new();
                for role in FIELD_ROLES {
                    names.extend(self.names(scope, role).await.unwrap_or_default());
                }
                bail!("{e} on {}; the fields there: {names:?}", self.url().await.unwrap_or_default())
            }
        }
    }

    /// Every control (link, button, field) displayed now, as (role, accessible
    /// name): for checking that none is unnamed.
    pub async fn controls(&self) -> anyhow::Result<Vec<(String, String)>> {
        let selector = [Role::Link, Role::Button, Role::TextBox, Role::CheckBox, Role::Radio, Role::ComboBox]
            .map(Role::css)
            .join(", ");
        let mut out = Vec::new();
        for el in self.client.find_all(Locator::Css(&selector)).await? {
            if el.is_displayed().await? {
                out.push((self.role_of(&el).await?, self.name_of(&el).await?));
            }
        }
        Ok(out)
    }

    /// Replace the value of the field labelled `label` with `value`, typing it.
    pub async fn fill(&self, label: &str, value: &str) -> anyhow::Result<()> {
        let field = self.field(label).await?;
        field.clear().await?;
        field.send_keys(value).await?;
        Ok(())
    }

    /// Type `date` into the date field labelled `label` as a person does
    /// (month, day, year, for the browser's `en-US`), and check the field
    /// now holds it.
    pub async fn fill_date(&self, label: &str, date: chrono::NaiveDate) -> anyhow::Result<()> {
        let field = self.field(label).await?;
        field.send_keys(&date.format("%m%d%Y").to_string()).await?;
        let value = field.prop("value").await?.unwrap_or_default();
        if value != date.format("%Y-%m-%d").to_string() {
            bail!("typed {date} into {label:?}, which holds {value:?}");
        }
        Ok(())
    }

    /// Click the button named `name`.
    pub async fn click_button(&self, name: &str) -> anyhow::Result<()> {
        self.button(name).await?.click().await.with_context(|| format!("clicking the button {name:?}"))
    }

    /// Click the link named `name`.
    pub async fn click_link(&self, name: &str) -> anyhow::Result<()> {
        self.link(name).await?.click().await.with_context(|| format!("clicking the link {name:?}"))
    }

    /// The accessible name chromium computes for `el`. Inside a cross-site
    /// iframe chromedriver cannot compute it (it answers "stale element
    /// reference" for elements of out-of-process frames); there the kit
    /// applies the common rules of accessible-name computation in script
    /// (`aria-labelledby`, `aria-label`, `<label>`, button value, `alt`,
    /// text content, `title`).
    pub async fn name_of(&self, el: &Element) -> anyhow::Result<String> {
        let v = match self.client.issue_cmd(ElementProperty::new(el, "computedlabel")).await {
            Ok(v) => v,
            Err(e) if e.is_stale_element_reference() => self.client.execute(NAME_IN_SCRIPT, vec![json!(el)]).await?,
            Err(e) => return Err(e.into()),
        };
        Ok(v.as_str().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// The ARIA role chromium computes for `el` (`button`, `link`, `textbox`,
    /// ...); in cross-site iframes, from the `role` attribute or the element
    /// (see [`name_of`](Self::name_of)).
    pub async fn role_of(&self, el: &Element) -> anyhow::Result<String> {
        let v = match self.client.issue_cmd(ElementProperty::new(el, "computedrole")).await {
            Ok(v) => v,
            Err(e) if e.is_stale_element_reference() => self.client.execute(ROLE_IN_SCRIPT, vec![json!(el)]).await?,
            Err(e) => return Err(e.into()),
        };
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// The element that has keyboard focus.
    pub async fn focused(&self) -> anyhow::Result<Element> {
        Ok(self.client.active_element().await?)
    }

    /// Press and release one key on whatever has focus, as a keyboard does
    /// (WebDriver actions: focus does not move unless the key moves it).
    pub async fn press(&self, key: Key) -> anyhow::Result<()> {
        let c: char = key.into();
        self.keys(&[c]).await
    }

    /// Type `text` into whatever has focus, key by key.
    pub async fn type_text(&self, text: &str) -> anyhow::Result<()> {
        self.keys(&text.chars().collect::<Vec<_>>()).await
    }

    async fn keys(&self, keys: &[char]) -> anyhow::Result<()> {
        let mut seq = KeyActions::new("keyboard".into());
        for &value in keys {
            seq = seq.then(KeyAction::Down { value }).then(KeyAction::Up { value });
        }
        self.client.perform_actions(seq).await?;
        self.client.release_actions().await?;
        Ok(())
    }

    /// Press Tab until the focused element has accessible name `name` (at most
    /// `limit` presses); returns how many presses it took. Fails naming every
    /// control focus passed through, so a missing or unnamed control shows.
    pub async fn tab_to(&self, name: &str, limit: usize) -> anyhow::Result<usize> {
        let mut passed = Vec::new();
        for presses in 1..=limit {
            self.press(Key::Tab).await?;
            let el = self.focused().await?;
            let n = self.name_of(&el).await.unwrap_or_default();
            if n == name {
                return Ok(presses);
            }
            passed.push(format!("{} {n:?}", self.role_of(&el).await.unwrap_or_default()));
        }
        bail!("{name:?} not reached with {limit} Tab presses; focus went through: {passed:?}")
    }

    /// Resize the window to `width` pixels (900 high); the page's viewport
    /// (`window.innerWidth`) is checked to match.
    pub async fn set_width(&self, width: u32) -> anyhow::Result<()> {
        self.client.set_window_size(width, HEIGHT).await?;
        let inner: u64 = self.script("return window.innerWidth", vec![]).await?;
        if inner != u64::from(width) {
            bail!("asked for a {width} px wide window, the page is {inner} px wide");
        }
        Ok(())
    }

    /// A PNG of the whole page (beyond the viewport), written as `<name>.png`
    /// to `$TMPDIR/hookline-screenshots/` and, when `HOOKLINE_UPDATE_SCREENSHOTS=1`,
    /// to `docs/screenshots/` too. Returns the temp path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.full_page_png().await?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, &png)?;
        eprintln!("screenshot: {}", path.display());
        if std::env::var("HOOKLINE_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
            std::fs::create_dir_all(&docs)?;
            std::fs::write(docs.join(format!("{name}.png")), &png)?;
        }
        Ok(path)
    }

    /// Chromium's DevTools screenshot of the full page: the viewport
    /// screenshot of WebDriver cuts long pages off.
    async fn full_page_png(&self) -> anyhow::Result<Vec<u8>> {
        use base64::Engine as _;
        let shot = self
            .client
            .issue_cmd(Cdp::new(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true, "fromSurface": true}),
            ))
            .await?;
        let data = shot["data"].as_str().context("Page.captureScreenshot answered without data")?;
        Ok(base64::engine::general_purpose::STANDARD.decode(data)?)
    }

    /// The text of an open alert, confirm or prompt dialog, if one is open.
    /// Dialogs stay open until handled (`unhandledPromptBehavior: ignore`), so
    /// an injected `alert(1)` is seen here rather than silently dismissed.
    pub async fn alert_text(&self) -> anyhow::Result<Option<String>> {
        match self.client.get_alert_text().await {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.is_no_such_alert() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Accept the open dialog (OK on a `confirm`).
    pub async fn accept_alert(&self) -> anyhow::Result<()> {
        Ok(self.client.accept_alert().await?)
    }

    /// Dismiss the open dialog (Cancel on a `confirm`).
    pub async fn dismiss_alert(&self) -> anyhow::Result<()> {
        Ok(self.client.dismiss_alert().await?)
    }

    /// Run `script` (a function body; `arguments[i]` are `args`) and decode
    /// what it returns. For reading state in assertions only.
    pub async fn script<T: serde::de::DeserializeOwned>(&self, script: &str, args: Vec<Value>) -> anyhow::Result<T> {
        let v = self.client.execute(script, args).await?;
        serde_json::from_value(v.clone()).with_context(|| format!("script returned {v}"))
    }

    /// Wait until a download finished in [`download_dir`](Self::download_dir)
    /// (chromium writes `*.crdownload` until then); returns its path and bytes.
    pub async fn downloaded(&self, timeout: Duration) -> anyhow::Result<(PathBuf, Vec<u8>)> {
        let dir = self.download_dir();
        let path = eventually(timeout, "a finished download", || async {
            let entries = std::fs::read_dir(&dir).ok()?;
            let files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            let partial = files.iter().any(|p| p.extension().is_some_and(|x| x == "crdownload"));
            if partial { None } else { files.into_iter().next() }
        })
        .await?;
        let bytes = std::fs::read(&path)?;
        Ok((path, bytes))
    }

    /// The value of cookie `name` for the current page, if set (HttpOnly included).
    pub async fn cookie(&self, name: &str) -> anyhow::Result<Option<String>> {
        match self.client.get_named_cookie(name).await {
            Ok(c) => Ok(Some(c.value().to_owned())),
            Err(e) if e.is_no_such_cookie() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Switch into the `index`th frame of the page (0 = the first iframe).
    pub async fn enter_frame(&self, index: u16) -> anyhow::Result<()> {
        Ok(self.client.clone().enter_frame(index).await?)
    }

    /// Back to the top-level page.
    pub async fn leave_frames(&self) -> anyhow::Result<()> {
        self.client.clone().enter_parent_frame().await?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
        if std::thread::panicking() {
            eprintln!(
                "--- chromedriver log ({}) ---\n{}",
                self.dir.display(),
                tail(&self.dir.join("chromedriver.log"), 20)
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `chromedriver` from `PATH` (Debian's `chromium-driver` puts it in /usr/bin),
/// in a process group of its own so chromium and its helpers die with it.
fn spawn_chromedriver(port: u16, log: &Path) -> anyhow::Result<Child> {
    let out = crate::append(log)?;
    Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .context("spawning chromedriver (apt-get install chromium chromium-driver; scripts/test.sh does)")
}

/// Wait until chromedriver accepts connections (its HTTP server keeps
/// connections open, so a read-to-close probe would hang; the session request
/// that follows is the real check).
async fn wait_driver_ready(port: u16, driver: &mut Child) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = driver.try_wait()? {
            bail!("chromedriver exited with {status}");
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("chromedriver did not listen on port {port} within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Chromium's path: the Debian package's launcher.
const CHROMIUM: &str = "/usr/bin/chromium";

async fn connect(port: u16, dir: &Path, downloads: &Path) -> anyhow::Result<Client> {
    let caps = json!({
        "browserName": "chrome",
        // Dialogs stay open until a test handles them (see `alert_text`).
        "unhandledPromptBehavior": "ignore",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                // Screenshots as wide as the window, with no scrollbar strip.
                "--hide-scrollbars",
                format!("--window-size={DESKTOP_WIDTH},{HEIGHT}"),
                format!("--user-data-dir={}", dir.join("profile").display()),
                format!("--host-resolver-rules=MAP *.{TEST_DOMAIN} 127.0.0.1"),
                // Date fields read and take dates as month/day/year (see `fill_date`).
                "--lang=en-US",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--password-store=basic",
            ],
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
                "safebrowsing.enabled": false,
            },
        },
    });
    let serde_json::Value::Object(caps) = caps else { unreachable!("a JSON object") };
    let mut builder = ClientBuilder::new(HttpConnector::new());
    builder.capabilities(caps);
    let client = builder.connect(&format!("http://127.0.0.1:{port}")).await.context("opening a chromium session")?;
    // Downloads in headless chromium go where the browser is told, not to prefs alone.
    client
        .issue_cmd(Cdp::new(
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": downloads, "eventsEnabled": false}),
        ))
        .await
        .context("allowing downloads")?;
    Ok(client)
}

/// The accessible name of `arguments[0]` by the rules most pages rely on,
/// for elements chromedriver cannot name (see `Browser::name_of`).
const NAME_IN_SCRIPT: &str = r#"
const el = arguments[0];
const text = n => (n.textContent || '').replace(/\s+/g, ' ').trim();
const ids = el.getAttribute('aria-labelledby');
if (ids) return ids.split(/\s+/).map(id => document.getElementById(id)).filter(Boolean).map(text).join(' ');
const aria = (el.getAttribute('aria-label') || '').trim();
if (aria) return aria;
if (el.labels && el.labels.length) return Array.from(el.labels).map(text).join(' ');
if (el.tagName === 'INPUT' && ['submit', 'button', 'reset'].includes(el.type)) return el.value;
if (el.tagName === 'IMG') return el.alt || '';
if (!['INPUT', 'SELECT', 'TEXTAREA'].includes(el.tagName) && text(el)) return text(el);
return (el.getAttribute('title') || el.getAttribute('placeholder') || '').trim();
"#;

/// The role of `arguments[0]`: its `role` attribute, else its element's.
const ROLE_IN_SCRIPT: &str = r#"
const el = arguments[0];
if (el.getAttribute('role')) return el.getAttribute('role');
const input = {checkbox: 'checkbox', radio: 'radio', submit: 'button', button: 'button', reset: 'button', image: 'button'};
switch (el.tagName) {
  case 'A': return el.hasAttribute('href') ? 'link' : 'generic';
  case 'BUTTON': case 'SUMMARY': return 'button';
  case 'SELECT': return 'combobox';
  case 'TEXTAREA': return 'textbox';
  case 'INPUT': return input[el.type] || 'textbox';
  default: return el.tagName.toLowerCase();
}
"#;

/// SIGKILL the process group led by `child`, then reap it.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.wait();
}

/// `GET /session/{id}/element/{id}/{what}`: chromedriver's computed
/// accessible name (`computedlabel`) and role (`computedrole`), which
/// fantoccini has no method for.
#[derive(Debug)]
struct ElementProperty {
    element: String,
    what: &'static str,
}

impl ElementProperty {
    fn new(el: &Element, what: &'static str) -> Self {
        Self { element: el.element_id().to_string(), what }
    }
}

impl WebDriverCompatibleCommand for ElementProperty {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/element/{}/{}", session.unwrap_or_default(), self.element, self.what))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::GET, None)
    }
}

/// `POST /session/{id}/goog/cdp/execute`: one DevTools command through
/// chromedriver (full-page screenshots, download permission).
#[derive(Debug)]
struct Cdp {
    body: String,
}

impl Cdp {
    fn new(cmd: &str, params: Value) -> Self {
        Self { body: json!({"cmd": cmd, "params": params}).to_string() }
    }
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.clone()))
    }
}
