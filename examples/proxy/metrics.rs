//! `GET /metrics`: the Prometheus recorder every metric of the proxy's stack goes to.

use http_doer::telemetry::{self, names};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs the Prometheus recorder, with the semantic conventions' buckets for the request
/// duration, and describes http-doer's metrics to it.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        // `_total` on counters and the unit on names (`..._duration_seconds`), the names an
        // OpenTelemetry collector would give the same metrics in Prometheus.
        .with_recommended_naming(true)
        .set_buckets_for_metric(
            Matcher::Full(names::HTTP_CLIENT_REQUEST_DURATION.to_owned()),
            &names::DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::LIMIT_WAIT_DURATION.to_owned()),
            &names::DURATION_BUCKETS,
        )?
        .install_recorder()?;
    telemetry::describe_metrics();
    // Scrapes drain the histograms; this keeps them bounded when nobody scrapes.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
