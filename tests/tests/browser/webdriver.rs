//! A small W3C WebDriver client for the browser tests: just the commands
//! they use (new session, navigate, find, click, type, text, script,
//! screenshot), as JSON over hyper's HTTP/1.1 client to a local
//! chromedriver.
//!
//! Written here instead of using fantoccini, whose `webdriver` dependency
//! brings a second `http`, `cookie`, `time`, `url` and ICU's segmenter:
//! a lot to compile for a few JSON calls on loopback.
//!
//! Every wait is a bounded poll ([`WAIT`]); nothing here asserts on time.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// How long any one wait in a test may poll before it fails.
pub const WAIT: Duration = Duration::from_secs(20);
/// Between two polls of a wait.
const POLL: Duration = Duration::from_millis(100);
/// One HTTP exchange (WebDriver or server) gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The chromedriver and Chromium binaries (Debian's packages).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// One HTTP request with a JSON body (or none); the status and the body
/// parsed as JSON (`Value::String` of the text when it is not JSON).
async fn http_json(
    addr: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, addr);
        let bytes = match body {
            Some(body) => {
                request = request.header(CONTENT_TYPE, "application/json");
                serde_json::to_vec(body)?
            }
            None => Vec::new(),
        };
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(bytes)))?)
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        anyhow::Ok((status, value))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("{method} {addr}{path}: no answer within {REQUEST_TIMEOUT:?}"))?
}

/// The size of the page's viewport, in CSS pixels.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub width: u32,
    pub height: u32,
    /// Emulate a phone: exactly this viewport, touch, 2× pixels.
    pub phone: bool,
}

/// A chromedriver process on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    addr: String,
    /// The browsers' profiles, one directory each; removed on drop.
    profiles: PathBuf,
    browsers: u32,
}

impl Driver {
    /// Start chromedriver. Its absence is a failure, not a skip: the test
    /// command installs it (`scripts/test.sh`).
    pub async fn start() -> anyhow::Result<Driver> {
        for binary in [CHROMEDRIVER, CHROMIUM] {
            if !Path::new(binary).exists() {
                bail!(
                    "{binary} is missing: the browser tests need Debian's headless Chromium \
                     (apt-get install -y chromium chromium-driver; scripts/test.sh does this)"
                );
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // Its own process group, which the Chromium it starts joins: a
        // failed test (no clean `quit`) still takes every browser down.
        let child = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let profiles =
            std::env::temp_dir().join(format!("onsale-chromium-{}-{port}", std::process::id()));
        let driver = Driver {
            child,
            addr: format!("127.0.0.1:{port}"),
            profiles,
            browsers: 0,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok((200, status)) = http_json(&driver.addr, Method::GET, "/status", None).await
                && status["value"]["ready"] == true
            {
                return Ok(driver);
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready within {WAIT:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A new headless Chromium with a fresh profile showing the page in
    /// `window`. Screenshots go to `shots`.
    pub async fn browser(&mut self, window: Window, shots: &Path) -> anyhow::Result<Browser> {
        let Window {
            width,
            height,
            phone,
        } = window;
        self.browsers += 1;
        let profile = self.profiles.join(self.browsers.to_string());
        std::fs::create_dir_all(&profile)?;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", profile.display()),
        ];
        let mut chrome = json!({"binary": CHROMIUM, "args": args});
        if phone {
            // A phone's viewport exactly (a desktop window has a minimum
            // width), with touch and a phone's pixel density.
            chrome["mobileEmulation"] = json!({"deviceMetrics": {
                "width": width, "height": height, "pixelRatio": 2.0, "touch": true,
            }});
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": chrome,
            "timeouts": {"implicit": 0, "pageLoad": 30_000, "script": 30_000},
        }}});
        let value = self
            .call(Method::POST, "/session", Some(&capabilities))
            .await?;
        let session = value["sessionId"]
            .as_str()
            .with_context(|| format!("no session id in {value}"))?
            .to_owned();
        Ok(Browser {
            driver: self.addr.clone(),
            session,
            shots: shots.to_path_buf(),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        webdriver_call(&self.addr, method, path, body).await
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (`process_group(0)`).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

/// A WebDriver error: the spec's `error` code and message.
#[derive(Debug)]
pub struct WebDriverError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first_line = self.message.lines().next().unwrap_or("");
        write!(f, "webdriver {}: {first_line}", self.error)
    }
}

impl std::error::Error for WebDriverError {}

async fn webdriver_call(
    addr: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    // WebDriver wants a JSON body (`{}`) on every POST.
    let empty = json!({});
    let body = if method == Method::POST {
        Some(body.unwrap_or(&empty))
    } else {
        body
    };
    let (status, value) = http_json(addr, method, path, body).await?;
    let value = value.get("value").cloned().unwrap_or(value);
    if status != 200 {
        return Err(WebDriverError {
            error: value["error"].as_str().unwrap_or("unknown").to_owned(),
            message: value["message"].as_str().unwrap_or("").to_owned(),
        }
        .into());
    }
    Ok(value)
}

/// One browser session. Quit it with [`Browser::quit`]; a test that fails
/// first leaves it to the [`Driver`]'s drop.
#[derive(Debug)]
pub struct Browser {
    driver: String,
    session: String,
    shots: PathBuf,
}

impl Browser {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let path = format!("/session/{}{path}", self.session);
        webdriver_call(&self.driver, method, &path, body).await
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(Method::POST, "/url", Some(&json!({ "url": url })))
            .await
            .map(drop)
    }

    /// The element for `css`, if there is one now.
    async fn find(&self, css: &str) -> anyhow::Result<Option<String>> {
        let found = self
            .call(
                Method::POST,
                "/element",
                Some(&json!({"using": "css selector", "value": css})),
            )
            .await;
        match found {
            Ok(value) => Ok(value[ELEMENT_KEY].as_str().map(str::to_owned)),
            Err(e) if is_webdriver(&e, "no such element") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `css` matches an element that is displayed now.
    pub async fn is_displayed(&self, css: &str) -> anyhow::Result<bool> {
        let Some(element) = self.find(css).await? else {
            return Ok(false);
        };
        match self
            .call(Method::GET, &format!("/element/{element}/displayed"), None)
            .await
        {
            Ok(value) => Ok(value == true),
            Err(e) if is_webdriver(&e, "stale element reference") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Poll until `css` is displayed; on timeout, fail with what the page
    /// shows instead (its screen and error banner) and a screenshot.
    pub async fn wait_for(&self, css: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.is_displayed(css).await? {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self
                    .screenshot(&format!("failed-waiting-for-{}", slug(css)))
                    .await;
                bail!(
                    "{css} not displayed within {WAIT:?}; the page shows {}",
                    self.describe().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Poll until one of `css` is displayed; its index.
    pub async fn wait_for_any(&self, css: &[&str]) -> anyhow::Result<usize> {
        let deadline = Instant::now() + WAIT;
        loop {
            for (i, one) in css.iter().enumerate() {
                if self.is_displayed(one).await? {
                    return Ok(i);
                }
            }
            if Instant::now() > deadline {
                let _ = self.screenshot("failed-waiting").await;
                bail!(
                    "none of {css:?} displayed within {WAIT:?}; the page shows {}",
                    self.describe().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Poll until `script` (a function body returning a value) returns
    /// something truthy; that value.
    pub async fn wait_until(&self, what: &str, script: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.execute(script).await?;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(value);
            }
            if Instant::now() > deadline {
                let _ = self.screenshot(&format!("failed-{}", slug(what))).await;
                bail!(
                    "{what}: not within {WAIT:?}; the page shows {}",
                    self.describe().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Click `css` once it is displayed and enabled (polling, since the
    /// page re-renders parts of itself).
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            let last = match self.try_click(css).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                let _ = self
                    .screenshot(&format!("failed-click-{}", slug(css)))
                    .await;
                bail!(
                    "could not click {css} within {WAIT:?} ({last}); the page shows {}",
                    self.describe().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn try_click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?.context("no such element")?;
        let enabled = self
            .call(Method::GET, &format!("/element/{element}/enabled"), None)
            .await?;
        if enabled != true {
            bail!("disabled");
        }
        self.call(Method::POST, &format!("/element/{element}/click"), None)
            .await
            .map(drop)
    }

    /// Replace the text of the input `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        self.wait_for(css).await?;
        let element = self.find(css).await?.context("no such element")?;
        self.call(Method::POST, &format!("/element/{element}/clear"), None)
            .await?;
        self.call(
            Method::POST,
            &format!("/element/{element}/value"),
            Some(&json!({ "text": text })),
        )
        .await
        .map(drop)
    }

    /// The rendered text of `css` (empty when absent).
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let Some(element) = self.find(css).await? else {
            return Ok(String::new());
        };
        match self
            .call(Method::GET, &format!("/element/{element}/text"), None)
            .await
        {
            Ok(value) => Ok(value.as_str().unwrap_or("").to_owned()),
            Err(e) if is_webdriver(&e, "stale element reference") => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    /// Run `script` (a function body) in the page; its return value.
    pub async fn execute(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            Method::POST,
            "/execute/sync",
            Some(&json!({"script": script, "args": []})),
        )
        .await
    }

    /// Save a PNG of the viewport as `<shots>/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let value = self.call(Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().context("screenshot is not a string")?)
            .context("screenshot is not base64")?;
        std::fs::create_dir_all(&self.shots)?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// What the page shows, for failure messages: its screen, the error
    /// banner and the start of the visible text.
    pub async fn describe(&self) -> String {
        let script = "const e = document.getElementById('error');\
            return {screen: document.body.dataset.screen || null,\
                    error: e && !e.hidden ? e.textContent.trim() : null,\
                    text: document.body.innerText.replace(/\\s+/g, ' ').slice(0, 400)};";
        match self.execute(script).await {
            Ok(value) => value.to_string(),
            Err(e) => format!("(could not read the page: {e})"),
        }
    }

    /// End the session (Chromium exits).
    pub async fn quit(self) -> anyhow::Result<()> {
        self.call(Method::DELETE, "", None).await.map(drop)
    }
}

fn is_webdriver(error: &anyhow::Error, code: &str) -> bool {
    error
        .downcast_ref::<WebDriverError>()
        .is_some_and(|e| e.error == code)
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_owned()
}
