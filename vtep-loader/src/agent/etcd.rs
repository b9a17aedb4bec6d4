//! The connection to etcd: endpoints, TLS, and a time limit on every call, so that an etcd
//! that stopped answering (partitioned, frozen) ends the session like one that went away.

use std::{future::Future, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

/// How long one call may take before etcd counts as unreachable.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Client certificate authentication (`--etcd-cacert --etcd-cert --etcd-key`).
#[derive(Clone, Debug)]
pub struct Tls {
    pub cacert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

impl Tls {
    /// Reads the files once at start, so a missing one is bad input before anything runs.
    pub fn options(&self) -> Result<TlsOptions> {
        Ok(TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&self.cacert)?))
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?)))
    }
}

pub async fn connect(endpoints: &[String], tls: Option<&TlsOptions>) -> Result<Client> {
    // HTTP/2 pings find a dead connection even when no call is in flight (a watch waits).
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(CALL_TIMEOUT)
        .with_keep_alive(Duration::from_secs(2), CALL_TIMEOUT)
        .with_keep_alive_while_idle(true);
    if let Some(tls) = tls {
        opts = opts.with_tls(tls.clone());
    }
    rpc(Client::connect(endpoints, Some(opts))).await
}

/// One etcd call, failing after `CALL_TIMEOUT`.
pub async fn rpc<T>(call: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => Ok(r?),
        Err(_) => anyhow::bail!("etcd did not answer within {CALL_TIMEOUT:?}"),
    }
}
