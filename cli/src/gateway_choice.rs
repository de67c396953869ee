//! Which gateway `sooth agent test` runs agents against: canned answers, a
//! gateway started in-process, or a running one; and the run tokens for it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use sooth_protocol::{RunClaims, generate_key, mint, parse_signing_key_hex};
use sooth_proxy::{ProxyConfig, RunningGateway, api_keys, launch, launch_with_own_keys};
use sooth_runner::{Gateway, HttpGateway, ScriptedGateway};

use crate::TestArgs;

/// The miner hotkey the runs of a test session are made for.
const LOCAL_MINER: &str = "local";

/// Starts the gateway configured in `path` in this process, honouring the run tokens of
/// `trusted`, on `addr` (or the configured address). The upstream API keys come from the
/// environment; with `own_keys_of`, they count as that miner's own (a miner testing its agent),
/// otherwise as the operator's.
pub async fn start_in_process(
    path: &Path,
    trusted: VerifyingKey,
    addr: Option<SocketAddr>,
    own_keys_of: Option<&str>,
) -> anyhow::Result<RunningGateway> {
    let config = ProxyConfig::from_file(path)?;
    let keys = api_keys(&config, |name| std::env::var(name).ok())?;
    Ok(match own_keys_of {
        Some(miner) => launch_with_own_keys(config, Some(trusted), keys, addr, miner).await?,
        None => launch(config, Some(trusted), keys, addr).await?,
    })
}

/// The gateway of a test session, and how to mint its run tokens.
pub struct GatewayChoice {
    /// Where runs send gateway calls.
    pub gateway: Arc<dyn Gateway>,
    minter: Option<ed25519_dalek::SigningKey>,
    cap_usd: f64,
    /// Kept alive for the session when started in-process, and stopped
    /// with it.
    in_process: Option<RunningGateway>,
}

impl GatewayChoice {
    /// Pick the gateway the flags ask for.
    pub async fn from_args(args: &TestArgs) -> anyhow::Result<Self> {
        if !(args.run_cap_usd.is_finite() && args.run_cap_usd >= 0.0) {
            anyhow::bail!("--run-cap-usd must be a non-negative number");
        }
        if let Some(path) = &args.gateway_config {
            // A key of this session's own: the in-process gateway honours
            // the tokens this command mints, and nobody else's.
            let minter = generate_key();
            // The keys are the miner's own: its runs get the linked caps,
            // as at a validator where it linked them.
            let running = start_in_process(
                path,
                minter.verifying_key(),
                Some(([127, 0, 0, 1], 0).into()),
                Some(LOCAL_MINER),
            )
            .await?;
            let gateway = Arc::new(HttpGateway::new(running.base_url())?);
            return Ok(Self {
                gateway,
                minter: Some(minter),
                cap_usd: args.run_cap_usd,
                in_process: Some(running),
            });
        }
        if let Some(url) = &args.gateway {
            let key_file = args
                .validator_key
                .as_ref()
                .context("--gateway needs --validator-key")?;
            let text = std::fs::read_to_string(key_file)
                .with_context(|| format!("cannot read {}", key_file.display()))?;
            let minter = parse_signing_key_hex(&text)
                .with_context(|| format!("validator key {}", key_file.display()))?;
            let gateway = Arc::new(HttpGateway::new(url.clone())?);
            return Ok(Self {
                gateway,
                minter: Some(minter),
                cap_usd: args.run_cap_usd,
                in_process: None,
            });
        }
        let scripted = match &args.responses {
            Some(path) => ScriptedGateway::from_file(path)?,
            None => ScriptedGateway::empty(),
        };
        Ok(Self {
            gateway: Arc::new(scripted),
            minter: None,
            cap_usd: 0.0,
            in_process: None,
        })
    }

    /// Stops the in-process gateway, if this session started one: requests
    /// in flight finish and its ledger's last decisions reach the file.
    pub async fn stop(self) {
        if let Some(running) = self.in_process {
            running.stop().await;
        }
    }

    /// The run token for one run on an event created at `as_of` (unix
    /// seconds), when the gateway needs one: the gateway lets the run's
    /// searches see nothing published after `as_of`, as at a validator.
    pub fn token(
        &self,
        run_id: &str,
        agent_hash: &str,
        as_of: i64,
        limit_secs: u64,
    ) -> Option<String> {
        let key = self.minter.as_ref()?;
        let now = chrono::Utc::now().timestamp();
        let claims = RunClaims {
            run_id: run_id.to_owned(),
            miner: LOCAL_MINER.into(),
            agent_hash: agent_hash.to_owned(),
            caps_usd: BTreeMap::from([("*".to_owned(), self.cap_usd)]),
            linked_key: true,
            issued_at: now,
            expires_at: now + i64::try_from(limit_secs).unwrap_or(240) + 60,
            as_of,
        };
        Some(mint(key, &claims))
    }
}
