//! The leaderboard's pages end to end: a backtest with a benchmark agent and an event whose
//! title is hostile, then `sooth validator run` on the backtest's data, its pages loaded in
//! headless Chromium (Debian's `chromium`; `.ci/run` installs it). The numbers the browser
//! shows must be the JSON API's, the charts must be drawn, and the hostile title must be text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use common::live_validator::LiveValidator;
use common::{run, sooth};
use serde_json::Value;

/// What a hostile question's author would try: a script, an image whose error handler runs
/// script, and markup breaking out of an attribute.
const HOSTILE_TITLE: &str = r#"<script>document.title='pwned'</script> Will "><img src=x onerror="document.body.dataset.pwned=1"> happen?"#;

/// Forty questions over four days in ForecastBench's shape (market price in the metadata),
/// one of them with the hostile title, each resolving two days after it is asked.
fn write_events(path: &Path) {
    let mut text = String::new();
    for index in 0..40_u32 {
        let day = 1 + index / 10;
        let market = 0.05 + 0.9 * f64::from((index * 37) % 40) / 40.0;
        // Outcomes that mostly follow the market, so that it beats always saying 0.5.
        let outcome = u8::from(market > 0.5 || index % 9 == 0);
        let title = if index == 7 {
            HOSTILE_TITLE.to_owned()
        } else {
            format!("Will question {index} resolve yes?")
        };
        let row = serde_json::json!({
            "id": format!("q-{index:02}"),
            "source": "test",
            "title": title,
            "description": "A question for the pages' browser test.",
            "question_date": format!("2026-03-{day:02}T{:02}:00:00Z", 1 + index % 10),
            "resolution_date": format!("2026-03-{:02}", day + 2),
            "market_prob": market,
            "outcome": outcome,
        });
        writeln!(text, "{row}").unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// The page at `url` as headless Chromium renders it (its DOM after load).
fn browse(url: &str) -> String {
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot start chromium ({error}); install Debian's chromium package")
        });
    assert!(
        output.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn get_json(url: &str) -> Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
}

/// The `data-value` of the cell `data-field="field"` in the part of `html` that starts with
/// `marker`, as a number (`None` for an empty value).
fn field(html: &str, marker: &str, field: &str) -> Option<f64> {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page"));
    let row = &html[start..];
    let row = &row[..row.find("</tr>").unwrap_or(row.len())];
    let key = format!(r#"data-field="{field}" data-value=""#);
    let at = row
        .find(&key)
        .unwrap_or_else(|| panic!("no {field} after {marker}"))
        + key.len();
    let value = &row[at..at + row[at..].find('"').unwrap()];
    (!value.is_empty()).then(|| value.parse().unwrap())
}

#[test]
fn the_browser_shows_the_apis_numbers_draws_the_charts_and_never_runs_a_hostile_title() {
    let scratch = tempfile::tempdir().unwrap();
    let events = scratch.path().join("events.jsonl");
    write_events(&events);
    let data = scratch.path().join("data");
    let out = scratch.path().join("out");
    let market = sooth_test_agents::market_baseline();
    run(sooth()
        .args(["backtest", "--events"])
        .arg(&events)
        .arg("--agents")
        .arg(&market)
        .arg(sooth_test_agents::always_half())
        .arg("--benchmark")
        .arg(&market)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&out))
    .ok();
    // The static site of the same pages.
    let index = std::fs::read_to_string(out.join("site").join("index.html")).unwrap();
    assert!(
        index.contains(r#"data-reference="market_baseline""#),
        "{index}"
    );

    let mut validator =
        LiveValidator::start(&format!("data_dir = {:?}", data.display().to_string()), &[]);
    let base = validator.url.clone();
    validator.wait_until("the leaderboard is computed", || {
        get_json(&format!("{base}/v1/leaderboard"))["rows"]
            .as_array()
            .is_some_and(|rows| rows.len() == 2)
    });
    let board = get_json(&format!("{base}/v1/leaderboard"));

    // The leaderboard: every miner's and every reference's numbers are the API's.
    let page = browse(&format!("{base}/"));
    assert!(page.contains(r#"<table id="leaderboard">"#), "{page}");
    for row in board["rows"].as_array().unwrap() {
        let hotkey = row["hotkey"].as_str().unwrap();
        let marker = format!(r#"data-hotkey="{hotkey}""#);
        for name in [
            "rank",
            "mean_brier",
            "events_counted",
            "imputed_count",
            "weight",
        ] {
            assert_eq!(
                field(&page, &marker, name),
                row[name].as_f64(),
                "{hotkey} {name}"
            );
        }
        assert_eq!(
            field(&page, &marker, "mmc"),
            row["mmc"].as_f64(),
            "{hotkey} mmc"
        );
        assert!(row["mmc"].is_f64(), "{row}");
    }
    let references = board["references"].as_array().unwrap();
    assert_eq!(references.len(), 5, "one benchmark and four pools: {board}");
    for reference in references {
        let marker = format!(
            r#"data-reference="{}""#,
            reference["name"].as_str().unwrap()
        );
        assert_eq!(
            field(&page, &marker, "mean_brier"),
            reference["mean_brier"].as_f64(),
            "{marker}"
        );
    }
    // The benchmark is the same agent as the miner named after it: the same score.
    let benchmark = references
        .iter()
        .find(|reference| reference["kind"] == "benchmark")
        .unwrap();
    let miner = board["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["hotkey"] == "market_baseline")
        .unwrap();
    assert_eq!(benchmark["mean_brier"], miner["mean_brier"]);

    // The winner's page: its standing, the rolling chart ending on its Brier-101, and the
    // calibration chart's bins counting every scored forecast.
    let winner = board["rows"][0]["hotkey"].as_str().unwrap().to_owned();
    let page = browse(&format!("{base}/miners/{winner}"));
    let mean = board["rows"][0]["mean_brier"].as_f64();
    assert_eq!(field(&page, "<dl>", "mean_brier"), mean);
    assert_eq!(field(&page, r#"id="rolling""#, "latest_rolling"), mean);
    assert!(page.contains(r#"<polyline class="series""#), "{page}");
    let bins: u64 = page
        .match_indices(r#"data-count=""#)
        .map(|(at, key)| {
            let rest = &page[at + key.len()..];
            rest[..rest.find('"').unwrap()].parse::<u64>().unwrap()
        })
        .sum();
    let calibrated = field(&page, r#"id="calibration""#, "calibrated").unwrap();
    assert!(bins > 0);
    assert_eq!(bins as f64, calibrated);

    // The hostile title: shown as text, nothing of it run or parsed as markup.
    let page = browse(&format!("{base}/events/q-07"));
    assert!(
        page.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script"), "a script element: {page}");
    assert!(!page.contains("<img"), "an image element: {page}");
    assert!(!page.contains("data-pwned"), "a handler ran: {page}");
    assert!(!page.contains("<title>pwned"), "a script ran: {page}");
    let event = get_json(&format!("{base}/v1/events/q-07"));
    assert_eq!(event["title"], HOSTILE_TITLE);
    validator.stop();
}
