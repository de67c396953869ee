//! `sooth proxy run`: serve the gateway until interrupted.

use std::path::Path;

use anyhow::Context;
use sooth_proxy::{ProxyConfig, api_keys, launch};

use crate::outln;

/// Serve the gateway described by `config` until Ctrl-C.
pub fn run(config: &Path) -> anyhow::Result<()> {
    let config = ProxyConfig::from_file(config)?;
    let keys = api_keys(&config, |name| std::env::var(name).ok())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let gateway = launch(config, None, keys, None).await?;
        outln(format_args!("gateway listening on {}", gateway.base_url()))?;
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        outln("stopping: finishing requests in flight, writing the ledger")?;
        gateway.stop().await;
        outln("gateway stopped")
    })
}
