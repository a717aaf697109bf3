//! The floor for `scripts/bench`: the exporter's HTTP stack doing nothing but HTTP.
//!
//! Same runtime (tokio multi-thread), same accept loop ([`acquire_exporter::http::serve::serve`]:
//! hyper 1 HTTP/1.1, keep-alive, header timeout, connection cap), same router (axum) and the
//! same body read (`Limited` collect, 64 KiB) as the exporter's webhook; then a 200 with a small
//! JSON body. No decoding, no store, no metrics. The exporter's events/s divided by this
//! server's, on the same core with the same load, is the share of the HTTP stack's capacity the
//! exporter keeps.

use std::net::SocketAddr;
use std::time::Duration;

use acquire_exporter::http::serve::{self as server, ServerLimits};
use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use http_body_util::{BodyExt, Limited};

/// The exporter's default `--webhook.max-body-bytes`.
const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Parser, Debug)]
#[command(about = "HTTP floor: answers every webhook POST with 200 after reading the body")]
struct Cli {
    /// Address to listen on.
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:9868")]
    listen_address: SocketAddr,
    /// Path of the webhook.
    #[arg(long = "webhook.path", default_value = "/webhook")]
    webhook_path: String,
}

async fn webhook(request: Request) -> Response {
    let body = request.into_body();
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => {
            std::hint::black_box(collected.to_bytes());
            (
                [(header::CONTENT_TYPE, "application/json")],
                "{\"status\":\"observed\"}",
            )
                .into_response()
        }
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = Router::new()
            .route(&cli.webhook_path, post(webhook))
            .route("/-/ready", get(|| async { "Ready\n" }));
        let listener = tokio::net::TcpListener::bind(cli.listen_address).await?;
        eprintln!("floor listening on {}", listener.local_addr()?);
        server::serve(
            listener,
            app,
            None,
            ServerLimits::default(),
            server::shutdown_signal(),
            Duration::from_secs(10),
        )
        .await
    })
}
