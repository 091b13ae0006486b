//! Integration tests: the real `roomcast` binary over real sockets. One module per feature.

mod support;

mod api;
mod catchup;
mod cluster;
mod config;
mod conformance;
mod core_chat;
mod crowds;
mod deflate;
mod disk_full;
mod feed;
mod history;
mod hostile;
mod http_errors;
mod js_client;
mod json_protocol;
mod lifecycle;
mod metrics;
mod moderation;
mod ops;
mod pipelining;
mod rate_limits;
mod scale;
mod security;
mod semantics;
mod sigstop;
mod tidy;
mod tls;
mod tokens;
mod webhooks;
mod ws_violations;
