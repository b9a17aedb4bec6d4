//! `--metrics ADDR`: Prometheus text over plain HTTP, the data path's counters and table
//! use beside the agent's own state. One tiny responder rather than a web framework: every
//! request gets the metrics.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tracing::{info, warn};

use super::status::Status;
use crate::stats;

pub async fn serve(addr: SocketAddr, status: Arc<Status>) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} for --metrics"))?;
    info!("metrics on http://{addr}/metrics");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    if let Err(e) = answer(conn, &status).await {
                        warn!("metrics request failed: {e:#}");
                    }
                }
                Err(e) => warn!("metrics listener: {e}"),
            }
        }
    });
    Ok(())
}

async fn answer(mut conn: TcpStream, status: &Status) -> Result<()> {
    // The request itself does not matter (every path gets the metrics), but it is read so
    // the client sees a clean reply; a client that sends nothing gets it after a second.
    let mut head = [0u8; 4096];
    if let Ok(read) = tokio::time::timeout(Duration::from_secs(1), conn.read(&mut head)).await {
        read.context("reading the request")?;
    }
    let mut registry = prometheus_client::registry::Registry::default();
    status.register(&mut registry);
    let body = stats::prometheus(registry).await?;
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(reply.as_bytes()).await?;
    Ok(())
}
