//! `sooth agent upload` and `sooth agent status`: a miner's agent versions at a validator.

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use sooth_miner_client::{AgentVersion, Verdict};

use crate::miner_cmd::connect;
use crate::runner_setup::{default_cache_dir, make_runner};
use crate::{StatusArgs, UploadArgs, outln};

/// Checks the agent locally (the validator's size cap, loading in the sandbox), then uploads
/// it; the last line is `version N: STATUS`.
pub fn upload(args: &UploadArgs) -> anyhow::Result<()> {
    let path = args.agent.display();
    let url = &args.target.validator;
    let bytes = std::fs::read(&args.agent).with_context(|| format!("cannot read agent {path}"))?;
    let client = connect(&args.target)?;
    let cache_dir = args.cache_dir.clone().or_else(default_cache_dir);
    crate::runtime()?.block_on(async {
        let identity = client
            .identity()
            .await
            .with_context(|| format!("cannot ask the validator at {url} for its rules"))?;
        let not_sent = || format!("agent {path} was not uploaded");
        identity
            .check_upload(bytes.len() as u64)
            .with_context(not_sent)?;
        let agent = make_runner(cache_dir)?
            .load(&bytes)
            .await
            .context("it does not load in the validator's sandbox")
            .with_context(not_sent)?;
        outln(format_args!(
            "checked {path}: {} bytes (the validator takes up to {}), sha256 {}, loads in the sandbox",
            agent.size(),
            identity.max_upload_bytes,
            agent.hash()
        ))?;
        let accepted = client
            .upload(bytes)
            .await
            .with_context(|| format!("cannot upload agent {path} to the validator at {url}"))?;
        outln(format_args!(
            "uploaded as {}: the validator verifies it before it can activate \
             (see `sooth agent status {}`)",
            client.hotkey(),
            accepted.version
        ))?;
        outln(format_args!(
            "version {}: {}",
            accepted.version, accepted.status
        ))
    })
}

/// Prints one version with its verdicts (the last word is its status), or all the miner's
/// versions, one a line.
pub fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let url = &args.target.validator;
    let client = connect(&args.target)?;
    let runtime = crate::runtime()?;
    if let Some(id) = args.version {
        let version = runtime
            .block_on(client.version(id))
            .with_context(|| format!("cannot read version {id} from the validator at {url}"))?;
        return print_version(&version);
    }
    let versions = runtime.block_on(client.versions()).with_context(|| {
        format!(
            "cannot read the versions of {} from the validator at {url}",
            client.hotkey()
        )
    })?;
    if versions.is_empty() {
        return outln(format_args!("{} has uploaded no versions", client.hotkey()));
    }
    for version in &versions {
        outln(summary(version))?;
    }
    Ok(())
}

/// `version N: STATUS`, and the reason in parentheses where there is one.
fn summary(version: &AgentVersion) -> String {
    match &version.reason {
        Some(reason) => format!("version {}: {} ({reason})", version.version, version.status),
        None => format!("version {}: {}", version.version, version.status),
    }
}

fn print_version(version: &AgentVersion) -> anyhow::Result<()> {
    let size = version
        .size_bytes
        .map_or_else(String::new, |bytes| format!(", {bytes} bytes"));
    outln(format_args!(
        "version {} of {}: sha256 {}{size}, uploaded by {} at {}, {} verification attempt(s)",
        version.version,
        version.hotkey,
        version.hash,
        version.uploaded_by,
        instant(version.uploaded_at),
        version.attempts
    ))?;
    for (what, at) in [
        ("verified", version.verified_at),
        ("activated", version.activated_at),
        ("deactivated", version.deactivated_at),
    ] {
        if let Some(at) = at {
            outln(format_args!("{what} at {}", instant(at)))?;
        }
    }
    if let Some(reason) = &version.reason {
        outln(format_args!("reason: {reason}"))?;
    }
    if let Some(matched) = version.matched_version {
        outln(format_args!("matched version {matched}"))?;
    }
    for verdict in &version.verdicts {
        outln(verdict_line(verdict))?;
    }
    outln(format_args!(
        "version {}: {}",
        version.version, version.status
    ))
}

/// `verdict CHECK (SCOPE): passed|failed[, statistic S][, matched version V]: DETAIL`.
fn verdict_line(verdict: &Verdict) -> String {
    let mut line = format!(
        "verdict {} ({}): {}",
        verdict.check,
        verdict.scope,
        if verdict.passed { "passed" } else { "failed" }
    );
    if let Some(statistic) = verdict.statistic {
        line.push_str(&format!(", statistic {statistic:.4}"));
    }
    if let Some(matched) = verdict.matched_version {
        line.push_str(&format!(", matched version {matched}"));
    }
    if !verdict.detail.is_empty() {
        line.push_str(&format!(": {}", verdict.detail));
    }
    line
}

/// `2026-03-01T10:00:00Z`, with milliseconds where there are.
fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
