//! The REST API and what stands behind it: the one error shape, the OpenAPI contract (live and
//! committed), metrics, configuration layers and the example file, `healthcheck`, TLS files,
//! HTTPS on the HTTP listener, the reverse-proxy examples, persisted state and every limit.
//!
//! One behaviour per file; the files of an area share one test executable, since each executable
//! links webrtc-rs (`testkit` holds what they share).

mod api_errors;
mod config_layers;
mod contract;
mod dashboard;
mod example_config;
mod healthcheck;
mod http_guards;
mod https_listener;
mod limits;
mod logs;
mod metrics;
mod metrics_listener;
mod openapi_drift;
mod reverse_proxy;
mod state_persistence;
mod tls_files;
