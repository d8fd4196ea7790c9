//! Headless Chromium driven through `chromedriver`'s W3C WebDriver protocol (plain HTTP and
//! JSON, so a few calls with reqwest do; a WebDriver crate would bring a second HTTP stack for
//! the six endpoints used here).
//!
//! # Invariants
//!
//! - The browser runs with a profile directory of its own under the test's scratch directory,
//!   which is how [`Browser::leftovers`] finds any of its processes still running.
//! - Dropping the [`Browser`] ends the session (the browser quits) and kills chromedriver's
//!   process group.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::{Process, free_port, http_client, wait_until};

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One headless Chromium session.
pub struct Browser {
    driver: Option<Process>,
    base: String,
    session: String,
    profile: PathBuf,
    client: reqwest::Client,
}

impl Browser {
    /// Starts chromedriver (`chromedriver`) and a headless session of `chromium`, with its
    /// profile and logs under `dir`.
    pub async fn start(chromedriver: &Path, chromium: &Path, dir: &Path) -> Self {
        let port = free_port();
        let driver = Process::start(
            "chromedriver",
            chromedriver,
            &[&format!("--port={port}"), "--allowed-ips=127.0.0.1"],
            dir.join("chromedriver.log"),
        );
        let base = format!("http://127.0.0.1:{port}");
        let client = http_client();
        wait_until("chromedriver answers", Duration::from_secs(30), || {
            let request = client.get(format!("{base}/status")).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
        let profile = dir.join("chromium-profile");
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--no-first-run",
                        "--window-size=1500,1300",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
            }},
        });
        let answer = webdriver(
            client.post(format!("{base}/session")).json(&capabilities),
            "/session",
        )
        .await;
        let session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        Self {
            driver: Some(driver),
            base,
            session,
            profile,
            client,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        webdriver(request, path).await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub async fn execute(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Clicks the first element matching the CSS `selector`, as a user would.
    pub async fn click(&self, selector: &str) {
        let element = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": selector })),
            )
            .await;
        let id = element[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}: {element}"))
            .to_owned();
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("valid base64");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the screenshot's directory");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Ends the session and chromedriver; then the browser processes still running, if any
    /// (found by their profile directory), as `pid command` lines.
    pub async fn stop(mut self) -> Vec<String> {
        self.quit().await;
        let profile = self.profile.display().to_string();
        let mut left = Vec::new();
        // The browser's own processes exit a moment after the session ends.
        for _ in 0..50 {
            left = processes_mentioning(&profile);
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        left
    }

    async fn quit(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.client.delete(url).send().await;
        if let Some(mut driver) = self.driver.take() {
            driver.kill();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A panicking test still stops chromedriver's group (Process's drop); the browser,
        // started by chromedriver in that group, goes with it.
        if let Some(mut driver) = self.driver.take() {
            driver.kill();
        }
    }
}

/// Sends a WebDriver request and gives its answer's `value`; panics on a WebDriver error.
async fn webdriver(request: reqwest::RequestBuilder, path: &str) -> Value {
    let answer: Value = request
        .send()
        .await
        .expect("chromedriver answers")
        .json()
        .await
        .expect("a JSON answer");
    let value = answer["value"].clone();
    assert!(value.get("error").is_none(), "WebDriver {path}: {value}");
    value
}

/// `pid command` of every process whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let command = std::fs::read(entry.path().join("cmdline")).ok()?;
            let command = String::from_utf8_lossy(&command).replace('\0', " ");
            command
                .contains(needle)
                .then(|| format!("{pid} {}", command.trim()))
        })
        .collect()
}
