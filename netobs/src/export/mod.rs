//! What leaves the agent: Prometheus metrics, the JSON API, alerts.
pub mod alerts;
pub mod exporter;
pub mod http;
pub mod metrics;
