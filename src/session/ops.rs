//! The operations endpoints as HTTP responses: `/metrics` (OpenMetrics text) and `/readyz` (JSON,
//! 200 or 503). The figures come from `telemetry::Telemetry`; this file only wraps them in responses.

use super::ShardCtx;
use crate::http::response::Response;
use crate::protocol::json;
use crate::telemetry::OPENMETRICS_CONTENT_TYPE;

/// `GET /metrics`: every metric, rendered now.
pub(crate) fn metrics(ctx: &ShardCtx) -> Response {
    match ctx.telemetry.render() {
        Ok(text) => Response::new(200, OPENMETRICS_CONTENT_TYPE, text.into_bytes()),
        Err(err) => {
            tracing::warn!(%err, "could not render /metrics");
            Response::error(500, "metrics_unavailable", "metrics could not be rendered")
        }
    }
}

/// `GET /readyz`: 200 `{"status":"ready",…}` when the server can take traffic, else 503.
pub(crate) fn ready(ctx: &ShardCtx) -> Response {
    let readiness = ctx.telemetry.readiness();
    let body = json::readiness(readiness.is_ready(), readiness.store.as_str(), readiness.draining);
    Response::json(readiness.status(), body)
}
