//! A small blocking client for the operator HTTP API: HTTP/1.1 over hyper on
//! a current-thread tokio runtime, one connection per request (the CLI
//! sends at most a few requests a second; a pool would buy nothing).
//!
//! Endpoint failover: requests go to the endpoint that answered last; when
//! it cannot be reached (connection refused, connect or request timeout,
//! the connection dropped before an answer) the next one is tried, so any
//! single node may be dead. An HTTP answer, even an error, is the answer.
//! `busy` (503 while an event moves or fails over) is retried for a bound
//! time. Every operator route is idempotent, which makes retrying a POST
//! on another endpoint safe.

use std::cell::Cell;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::error::{CtlError, Kind, Result};

/// Longest wait for a TCP connection to one endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a whole answer (the server gives up on a request
/// after 30 s itself; a move may take a while).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);
/// How long `busy` answers are retried before giving up.
const BUSY_RETRY_FOR: Duration = Duration::from_secs(5);
/// Pause between `busy` retries (at most; `Retry-After` is in whole seconds).
const BUSY_PAUSE: Duration = Duration::from_millis(200);
/// Answers larger than this are refused (an event list of 10,000 events is
/// about 3 MB).
const ANSWER_BYTES_MAX: usize = 64 << 20;

/// One operator endpoint: `http://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    /// `http://host:port`, `host:port` or `http://host:port/`; no TLS.
    pub fn parse(text: &str) -> Result<Endpoint> {
        let trimmed = text.trim();
        if trimmed.starts_with("https://") {
            return Err(CtlError::usage(format!(
                "endpoint {trimmed:?}: https is not supported (the operator API is plain HTTP)"
            )));
        }
        let rest = trimmed.strip_prefix("http://").unwrap_or(trimmed);
        let rest = rest.trim_end_matches('/');
        let bad = || {
            CtlError::usage(format!(
                "endpoint {trimmed:?} is not http://HOST:PORT or HOST:PORT"
            ))
        };
        if rest.is_empty() || rest.contains('/') {
            return Err(bad());
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority())
    }
}

/// The operator API of a cluster, through any of its endpoints.
#[derive(Debug)]
pub struct Client {
    endpoints: Vec<Endpoint>,
    token: String,
    runtime: tokio::runtime::Runtime,
    /// The endpoint that answered last; requests start there.
    current: Cell<usize>,
}

/// Why one attempt on one endpoint got no answer.
enum Unreachable {
    Connect(String),
    Dropped(String),
}

struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Bytes,
}

impl Client {
    pub fn new(endpoints: Vec<Endpoint>, token: String) -> Result<Client> {
        if endpoints.is_empty() {
            return Err(CtlError::usage(
                "no endpoint given (--endpoint or ONSALE_ENDPOINT)",
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CtlError::other(format!("starting the runtime: {e}")))?;
        Ok(Client {
            endpoints,
            token,
            runtime,
            current: Cell::new(0),
        })
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.request(Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| CtlError::other(format!("encoding the request: {e}")))?;
        self.request(Method::POST, path, Some(bytes))
    }

    /// The endpoint that answered last.
    pub fn current_endpoint(&self) -> &Endpoint {
        &self.endpoints[self.current.get()]
    }

    /// `GET /healthz` on every endpoint: for each that does not answer
    /// `ok`, why not.
    pub fn unhealthy_endpoints(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for endpoint in &self.endpoints {
            let attempt =
                self.runtime
                    .block_on(send(endpoint, &self.token, Method::GET, "/healthz", None));
            match attempt {
                Ok(answer) if answer.status.is_success() => {}
                Ok(answer) => {
                    problems.push(format!("endpoint {endpoint} answers {}", answer.status))
                }
                Err(Unreachable::Connect(why) | Unreachable::Dropped(why)) => {
                    problems.push(format!("endpoint {endpoint} does not answer: {why}"));
                }
            }
        }
        problems
    }

    fn request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Value> {
        let started = Instant::now();
        loop {
            let answer = self.answer(&method, path, body.as_deref())?;
            if answer.status.is_success() {
                return parse_json(&answer.body, path);
            }
            let error = server_error(&answer, path);
            let retry = error.code == "busy" && started.elapsed() < BUSY_RETRY_FOR;
            if !retry {
                return Err(error);
            }
            let pause = answer
                .retry_after
                .map_or(BUSY_PAUSE, |s| Duration::from_secs(s).min(BUSY_PAUSE));
            std::thread::sleep(pause);
        }
    }

    /// One answer from the first endpoint that gives one.
    fn answer(&self, method: &Method, path: &str, body: Option<&[u8]>) -> Result<Answer> {
        let count = self.endpoints.len();
        let first = self.current.get();
        let mut failures = Vec::new();
        for step in 0..count {
            let index = (first + step) % count;
            let endpoint = &self.endpoints[index];
            let attempt = self.runtime.block_on(send(
                endpoint,
                &self.token,
                method.clone(),
                path,
                body.map(<[u8]>::to_vec),
            ));
            match attempt {
                Ok(answer) => {
                    self.current.set(index);
                    return Ok(answer);
                }
                Err(Unreachable::Connect(why) | Unreachable::Dropped(why)) => {
                    failures.push(format!("{endpoint}: {why}"));
                }
            }
        }
        Err(CtlError::new(
            Kind::Error,
            "unreachable",
            format!(
                "no endpoint answered {method} {path}: {}",
                failures.join("; ")
            ),
        ))
    }
}

async fn send(
    endpoint: &Endpoint,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> std::result::Result<Answer, Unreachable> {
    let connect = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port));
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Unreachable::Connect(e.to_string())),
        Err(_) => {
            return Err(Unreachable::Connect(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Unreachable::Dropped(e.to_string()))?;
        let driver = tokio::spawn(connection);
        let has_body = body.is_some();
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, endpoint.authority())
            .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(hyper::header::ACCEPT, "application/json");
        if has_body {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Unreachable::Dropped(format!("building the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Unreachable::Dropped(e.to_string()))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let limited = http_body_util::Limited::new(response.into_body(), ANSWER_BYTES_MAX);
        let body = limited
            .collect()
            .await
            .map_err(|e| Unreachable::Dropped(format!("reading the answer: {e}")))?
            .to_bytes();
        driver.abort();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(Unreachable::Dropped(format!(
            "no answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        ))),
    }
}

fn parse_json(body: &[u8], path: &str) -> Result<Value> {
    serde_json::from_slice(body)
        .map_err(|e| CtlError::other(format!("the answer to {path} is not JSON: {e}")))
}

/// The server's error shape `{"reply":"error","code":..,"message":..}`
/// mapped to an exit code.
fn server_error(answer: &Answer, path: &str) -> CtlError {
    let parsed: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let code = field("code").unwrap_or_else(|| answer.status.as_str().to_owned());
    let server_message = field("message").unwrap_or_else(|| {
        String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)]).into_owned()
    });
    let status = answer.status;
    let kind = match status.as_u16() {
        404 => Kind::NotFound,
        409 => Kind::Conflict,
        408 | 504 => Kind::TimedOut,
        _ => Kind::Error,
    };
    let message = match (status.as_u16(), code.as_str()) {
        (401, _) => format!(
            "the operator token was refused ({status}): check --token-file or ONSALE_OPERATOR_TOKEN ({server_message})"
        ),
        (_, "bad_request") if server_message.contains("no such route") => format!(
            "{path}: this server does not have that route yet (an older onsale?): {server_message}"
        ),
        _ => format!("{server_message} ({code}, {status})"),
    };
    CtlError::new(kind, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_or_without_scheme() {
        let e = Endpoint::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(e.to_string(), "http://127.0.0.1:8080");
        assert_eq!(Endpoint::parse("localhost:9").unwrap().port, 9);
        assert_eq!(
            Endpoint::parse("[::1]:80").unwrap().to_string(),
            "http://[::1]:80"
        );
        for bad in ["", "http://", "host", "host:x", "https://a:1", "a:1/api"] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert_eq!(err.kind, Kind::Usage, "{bad}");
        }
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn server_errors_map_to_exit_codes() {
        let e = server_error(
            &answer(
                404,
                r#"{"reply":"error","code":"unknown_event","message":"No event has this id."}"#,
            ),
            "/x",
        );
        assert_eq!((e.kind, e.code.as_str()), (Kind::NotFound, "unknown_event"));
        let e = server_error(
            &answer(409, r#"{"code":"event_exists","message":"m"}"#),
            "/x",
        );
        assert_eq!(e.kind, Kind::Conflict);
        let e = server_error(
            &answer(401, r#"{"code":"unauthorized","message":"m"}"#),
            "/x",
        );
        assert_eq!(e.kind, Kind::Error);
        assert!(
            e.message.contains("operator token was refused"),
            "{}",
            e.message
        );
        let e = server_error(&answer(500, "not json"), "/x");
        assert_eq!(e.code, "500");
    }
}
