//! Metrics: one process-wide Prometheus recorder, rendered at `/metrics`.
//!
//! Names (all prefixed `onsale_`):
//! - `http_requests_total{route,status}`: every HTTP answer.
//! - `edge_answers_total{answer}`: joins answered from the edge cache
//!   (`sold_out`, `closed`) without asking the event.
//! - `rate_limited_total{scope}`: 429s, `global` or `fan`.
//! - `ws_connections`: open fan websockets (gauge).
//! - `ws_frames_sent_total`, `ws_slow_closed_total`, `ws_bad_frames_total`.
//! - `admissions_pushed_total`: fans told `admitted` by this gateway.
//! - `open_files_limit`: the soft limit after raising it at start.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the recorder (once per process; later calls reuse it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .as_ref()
}

/// The Prometheus text exposition of every metric.
#[must_use]
pub fn render() -> String {
    match install() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}
