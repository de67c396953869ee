//! Tests of the scoring rules: imputation, clipping, Brier scores, the window, the leaderboard
//! and winner-take-all weights.

use super::*;
use crate::test_support::at;
use chrono::TimeDelta;

fn miner(uid: u16, hotkey: &str, registered_at: &str) -> Miner {
    Miner {
        uid,
        hotkey: hotkey.to_owned(),
        registered_at: at(registered_at),
    }
}

fn event(
    id: &str,
    resolved_at: DateTime<Utc>,
    outcome: Outcome,
    predictions: &[Option<f64>],
) -> ResolvedEvent {
    ResolvedEvent {
        id: id.to_owned(),
        // Events last 3 days to their cutoff (SPEC, "events").
        created_at: resolved_at - TimeDelta::days(3),
        resolved_at,
        outcome,
        predictions: predictions.to_vec(),
    }
}

fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-12,
        "expected {expected}, got {actual}"
    );
}

fn row_of<'a>(rows: &'a [LeaderboardRow], hotkey: &str) -> &'a LeaderboardRow {
    rows.iter().find(|row| row.miner.hotkey == hotkey).unwrap()
}

const BASE: &str = "2026-01-10T00:00:00Z";

/// `n` events resolved one minute apart, ids zero-padded so that id order matches time.
fn minute_events(
    n: usize,
    outcome: Outcome,
    prediction: impl Fn(usize) -> Vec<Option<f64>>,
) -> Vec<ResolvedEvent> {
    (0..n)
        .map(|i| {
            event(
                &format!("e{i:04}"),
                at(BASE) + TimeDelta::minutes(i64::try_from(i).unwrap()),
                outcome,
                &prediction(i),
            )
        })
        .collect()
}

#[test]
fn clipping_bounds_finite_predictions_to_one_and_ninety_nine_percent() {
    // Below the range: 0.0, 0.005 and -3.0 all become 0.01.
    for raw in [0.0, 0.005, -3.0] {
        assert_eq!(
            scored_prediction(Some(raw)),
            ScoredPrediction {
                value: 0.01,
                imputed: false
            }
        );
    }
    // Above the range: 1.0, 0.995 and 7.0 all become 0.99.
    for raw in [1.0, 0.995, 7.0] {
        assert_eq!(
            scored_prediction(Some(raw)),
            ScoredPrediction {
                value: 0.99,
                imputed: false
            }
        );
    }
    // Inside the range, including the bounds themselves, nothing changes.
    for raw in [0.01, 0.3, 0.5, 0.99] {
        assert_eq!(scored_prediction(Some(raw)).value, raw);
    }
}

#[test]
fn brier_of_clipped_extremes() {
    // A confident wrong 0.0 on a Yes is scored as 0.01: (0.01 - 1)^2 = 0.99^2 = 0.9801,
    // not 1.0.
    let p = scored_prediction(Some(0.0)).value;
    assert_close(brier_score(p, Outcome::Yes), 0.9801);
    // A confident right 1.0 on a Yes is scored as 0.99: (0.99 - 1)^2 = 0.0001, not 0.
    let p = scored_prediction(Some(1.0)).value;
    assert_close(brier_score(p, Outcome::Yes), 0.0001);
    // 0.3 on a No: 0.3^2 = 0.09; on a Yes: 0.7^2 = 0.49.
    assert_close(brier_score(0.3, Outcome::No), 0.09);
    assert_close(brier_score(0.3, Outcome::Yes), 0.49);
}

#[test]
fn missing_and_invalid_predictions_are_imputed_one_half() {
    let imputed = ScoredPrediction {
        value: 0.5,
        imputed: true,
    };
    assert_eq!(scored_prediction(None), imputed);
    assert_eq!(scored_prediction(Some(f64::NAN)), imputed);
    assert_eq!(scored_prediction(Some(f64::INFINITY)), imputed);
    assert_eq!(scored_prediction(Some(f64::NEG_INFINITY)), imputed);
    // 0.5 is inside [0.01, 0.99], so clipping keeps it: Brier 0.25 either way.
    assert_eq!(brier_score(imputed.value, Outcome::Yes), 0.25);
    assert_eq!(brier_score(imputed.value, Outcome::No), 0.25);
}

#[test]
fn event_scores_follow_the_miner_order() {
    let e = event("e", at(BASE), Outcome::No, &[Some(0.2), None, Some(1.5)]);
    // 0.2^2 = 0.04; imputed 0.5^2 = 0.25; 1.5 clipped to 0.99: 0.99^2 = 0.9801.
    let scores = ScoredEvent::of(&e).scores;
    assert_eq!(scores.len(), 3);
    assert_close(scores[0].brier, 0.04);
    assert_close(scores[1].brier, 0.25);
    assert_close(scores[2].brier, 0.9801);
}

#[test]
fn outcome_is_zero_or_one() {
    assert_eq!(Outcome::try_from(0), Ok(Outcome::No));
    assert_eq!(Outcome::try_from(1), Ok(Outcome::Yes));
    assert_eq!(
        Outcome::try_from(2),
        Err(crate::event::EventError::BadOutcome("2".to_owned()))
    );
    assert_eq!(u8::from(Outcome::Yes), 1);
}

#[test]
fn leaderboard_means_counts_and_winner() {
    let miners = [
        miner(0, "alice", "2026-01-01T00:00:00Z"),
        miner(1, "bob", "2026-01-01T00:00:00Z"),
        miner(2, "carol", "2026-01-01T00:00:00Z"),
    ];
    let events = [
        event(
            "a",
            at("2026-01-05T10:00:00Z"),
            Outcome::Yes,
            &[Some(0.8), Some(0.6), None],
        ),
        event(
            "b",
            at("2026-01-05T11:00:00Z"),
            Outcome::No,
            &[Some(0.1), Some(0.4), Some(0.0)],
        ),
        event(
            "c",
            at("2026-01-05T12:00:00Z"),
            Outcome::Yes,
            &[Some(0.7), None, Some(0.9)],
        ),
    ];
    let rows = leaderboard(&miners, &events).unwrap();

    // alice: (0.2^2 + 0.1^2 + 0.3^2) / 3 = (0.04 + 0.01 + 0.09) / 3 = 0.14 / 3.
    // bob:   (0.4^2 + 0.4^2 + 0.25) / 3  = (0.16 + 0.16 + 0.25) / 3 = 0.57 / 3.
    // carol: (0.25 + 0.01^2 + 0.1^2) / 3 = (0.25 + 0.0001 + 0.01) / 3 = 0.2601 / 3.
    //        (0.0 is clipped to 0.01 before scoring.)
    let alice = row_of(&rows, "alice");
    let bob = row_of(&rows, "bob");
    let carol = row_of(&rows, "carol");
    assert_close(alice.mean_brier.unwrap(), 0.14 / 3.0);
    assert_close(bob.mean_brier.unwrap(), 0.57 / 3.0);
    assert_close(carol.mean_brier.unwrap(), 0.2601 / 3.0);
    assert_eq!(
        (alice.imputed_count, bob.imputed_count, carol.imputed_count),
        (0, 1, 1)
    );
    assert!(rows.iter().all(|row| row.events_counted == 3));

    // Order alice < carol < bob; alice takes all the weight.
    let order: Vec<_> = rows
        .iter()
        .map(|r| (r.rank, r.miner.hotkey.as_str(), r.weight))
        .collect();
    assert_eq!(
        order,
        [(1, "alice", 1.0), (2, "carol", 0.0), (3, "bob", 0.0)]
    );
}

#[test]
fn window_of_102_events_drops_the_first_resolved() {
    // One miner; 102 events all resolving Yes. On the earliest-resolved event it says 0.0
    // (clipped 0.01, Brier 0.9801); on all others 1.0 (clipped 0.99, Brier 0.0001).
    // The input is reversed to show that input order does not matter.
    let miners = [miner(0, "m", "2026-01-01T00:00:00Z")];
    let mut events = minute_events(102, Outcome::Yes, |i| {
        vec![Some(if i == 0 { 0.0 } else { 1.0 })]
    });
    events.reverse();
    let rows = leaderboard(&miners, &events).unwrap();
    // The bad event is the 102nd from the end, so it is out: 101 events of 0.0001 each.
    assert_eq!(rows[0].events_counted, 101);
    assert_close(rows[0].mean_brier.unwrap(), 0.0001);

    // With only 101 events it is still in: (0.9801 + 100 * 0.0001) / 101 = 0.9901 / 101.
    events.retain(|e| e.id != "e0101");
    let rows = leaderboard(&miners, &events).unwrap();
    assert_eq!(rows[0].events_counted, 101);
    assert_close(rows[0].mean_brier.unwrap(), 0.9901 / 101.0);
}

#[test]
fn fewer_events_than_the_window_are_all_counted() {
    let miners = [miner(0, "m", "2026-01-01T00:00:00Z")];
    let events = minute_events(5, Outcome::No, |_| vec![Some(0.2)]);
    let rows = leaderboard(&miners, &events).unwrap();
    // 5 events of 0.2^2 = 0.04.
    assert_eq!(rows[0].events_counted, 5);
    assert_close(rows[0].mean_brier.unwrap(), 0.04);
}

#[test]
fn window_orders_by_resolution_instant_then_event_id() {
    // 98 filler events resolved on 2026-01-10, and around them:
    // - "z-early" resolved on day 1: oldest, out, even though its id sorts last;
    // - "b" and "a" resolved at the same instant on day 1 + 1h: the tie goes by id, so "a"
    //   is older and out, "b" is in;
    // - "old-created" was created long before everything but resolved on 2026-02-01: in,
    //   because creation does not matter;
    // - "late", resolved last.
    // 103 events, window 101: the two oldest, "z-early" and "a", drop out.
    let day1 = at("2026-01-01T00:00:00Z");
    let mut events = minute_events(98, Outcome::No, |_| vec![Some(0.0)]);
    events.push(event("z-early", day1, Outcome::No, &[Some(0.9)]));
    events.push(event(
        "b",
        day1 + TimeDelta::hours(1),
        Outcome::No,
        &[Some(0.0)],
    ));
    events.push(event(
        "a",
        day1 + TimeDelta::hours(1),
        Outcome::No,
        &[Some(0.9)],
    ));
    let mut old = event(
        "old-created",
        at("2026-02-01T00:00:00Z"),
        Outcome::No,
        &[Some(0.0)],
    );
    old.created_at = at("2025-01-01T00:00:00Z");
    events.push(old);
    events.push(event(
        "late",
        at("2026-02-02T00:00:00Z"),
        Outcome::No,
        &[Some(0.0)],
    ));

    let window = scoring_window(&events, SCORING_WINDOW).unwrap();
    assert_eq!(window.len(), 101);
    let ids: Vec<_> = window.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids[0], "b");
    assert_eq!(&ids[99..], ["old-created", "late"]);
    assert!(!ids.contains(&"a") && !ids.contains(&"z-early"));

    // So the two 0.9s (Brier 0.81) are out, and the 101 in-window events were all 0.0
    // (clipped 0.01) on a No: mean 0.01^2 = 0.0001.
    let rows = leaderboard(&[miner(0, "m", "2026-01-01T00:00:00Z")], &events).unwrap();
    assert_close(rows[0].mean_brier.unwrap(), 0.0001);
}

#[test]
fn event_ids_compare_as_strings() {
    // Same resolution instant: "10" < "9" as strings, so "10" is older.
    let t = at(BASE);
    let events = [
        event("9", t, Outcome::No, &[]),
        event("10", t, Outcome::No, &[]),
    ];
    let ids: Vec<_> = scoring_window(&events, SCORING_WINDOW)
        .unwrap()
        .iter()
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(ids, ["10", "9"]);
}

#[test]
fn events_before_registration_are_imputed_and_counted() {
    // "late" registered after all four events resolved, so it has no predictions: each is
    // imputed 0.5 (Brier 0.25), mean 0.25, and all four count. "early" said 0.6 on Yes
    // events and 0.4 on No events: 0.4^2 = 0.16 each, mean 0.16.
    let miners = [
        miner(0, "early", "2026-01-01T00:00:00Z"),
        miner(1, "late", "2026-03-01T00:00:00Z"),
    ];
    let events = [
        event(
            "a",
            at("2026-01-10T00:00:00Z"),
            Outcome::Yes,
            &[Some(0.6), None],
        ),
        event(
            "b",
            at("2026-01-11T00:00:00Z"),
            Outcome::No,
            &[Some(0.4), None],
        ),
        event(
            "c",
            at("2026-01-12T00:00:00Z"),
            Outcome::Yes,
            &[Some(0.6), None],
        ),
        event(
            "d",
            at("2026-01-13T00:00:00Z"),
            Outcome::No,
            &[Some(0.4), None],
        ),
    ];
    let rows = leaderboard(&miners, &events).unwrap();
    let late = row_of(&rows, "late");
    assert_eq!(late.mean_brier, Some(0.25));
    assert_eq!((late.events_counted, late.imputed_count), (4, 4));
    assert_close(row_of(&rows, "early").mean_brier.unwrap(), 0.16);
}

#[test]
fn ties_go_to_the_earlier_registration_then_the_lower_uid() {
    // Identical predictions give identical means. uid 5 registered first, so it wins over
    // uids 1 and 2 although their uids are lower; between 1 and 2 (same instant) uid 1.
    let miners = [
        miner(2, "two", "2026-01-02T00:00:00Z"),
        miner(1, "one", "2026-01-02T00:00:00Z"),
        miner(5, "five", "2026-01-01T00:00:00Z"),
    ];
    let events = minute_events(7, Outcome::Yes, |i| vec![Some(0.1 * (i % 9) as f64); 3]);
    let rows = leaderboard(&miners, &events).unwrap();
    let order: Vec<_> = rows
        .iter()
        .map(|r| (r.rank, r.miner.uid, r.weight))
        .collect();
    assert_eq!(order, [(1, 5, 1.0), (2, 1, 0.0), (3, 2, 0.0)]);
    assert_eq!(rows[0].mean_brier, rows[2].mean_brier);
}

#[test]
fn everyone_imputed_means_the_earliest_registration_wins() {
    // Nobody has a valid prediction: all mean 0.25, so registration order decides.
    let miners = [
        miner(0, "new", "2026-01-05T00:00:00Z"),
        miner(1, "old", "2026-01-04T00:00:00Z"),
    ];
    let events = minute_events(3, Outcome::No, |_| vec![None, Some(f64::NAN)]);
    let rows = leaderboard(&miners, &events).unwrap();
    assert_eq!(rows[0].miner.hotkey, "old");
    assert_eq!(rows[0].weight, 1.0);
    assert!(
        rows.iter()
            .all(|r| r.mean_brier == Some(0.25) && r.imputed_count == 3)
    );
}

#[test]
fn no_resolved_events_means_no_scores_and_no_weight() {
    let miners = [
        miner(0, "b", "2026-01-02T00:00:00Z"),
        miner(1, "a", "2026-01-01T00:00:00Z"),
    ];
    let rows = leaderboard(&miners, &[]).unwrap();
    assert!(
        rows.iter()
            .all(|r| r.mean_brier.is_none() && r.events_counted == 0 && r.weight == 0.0)
    );
    // Still a total order: earlier registration first.
    assert_eq!(rows[0].miner.hotkey, "a");
    assert_eq!((rows[0].rank, rows[1].rank), (1, 2));
}

#[test]
fn no_miners_gives_an_empty_leaderboard() {
    let events = minute_events(3, Outcome::No, |_| vec![]);
    assert!(leaderboard(&[], &events).unwrap().is_empty());
}

#[test]
fn a_miner_that_may_not_earn_passes_the_weight_on() {
    let miners = [
        miner(0, "copycat", "2026-01-01T00:00:00Z"),
        miner(1, "honest", "2026-01-01T00:00:00Z"),
    ];
    let events = minute_events(2, Outcome::Yes, |_| vec![Some(0.9), Some(0.8)]);
    let mut rows = leaderboard(&miners, &events).unwrap();
    assert_eq!(rows[0].miner.hotkey, "copycat");
    assign_winner_take_all(&mut rows, |m| m.hotkey != "copycat");
    assert_eq!(row_of(&rows, "copycat").weight, 0.0);
    assert_eq!(row_of(&rows, "honest").weight, 1.0);
    // Nobody eligible: nobody is paid.
    assign_winner_take_all(&mut rows, |_| false);
    assert!(rows.iter().all(|r| r.weight == 0.0));
}

#[test]
fn malformed_input_is_refused() {
    let miners = [
        miner(0, "a", "2026-01-01T00:00:00Z"),
        miner(1, "b", "2026-01-01T00:00:00Z"),
    ];
    let short = [event("x", at(BASE), Outcome::No, &[Some(0.1)])];
    assert_eq!(
        leaderboard(&miners, &short),
        Err(ScoringError::PredictionCountMismatch {
            event_id: "x".into(),
            expected: 2,
            found: 1
        })
    );

    let twice = [
        event("x", at(BASE), Outcome::No, &[None, None]),
        event(
            "x",
            at(BASE) + TimeDelta::hours(1),
            Outcome::Yes,
            &[None, None],
        ),
    ];
    assert_eq!(
        leaderboard(&miners, &twice),
        Err(ScoringError::DuplicateEvent {
            event_id: "x".into()
        })
    );

    let mut backwards = event("x", at(BASE), Outcome::No, &[None, None]);
    backwards.created_at = at(BASE) + TimeDelta::seconds(1);
    assert!(matches!(
        leaderboard(&miners, &[backwards]),
        Err(ScoringError::ResolvedBeforeCreated { .. })
    ));

    let same_uid = [miner(0, "a", BASE), miner(0, "b", BASE)];
    assert_eq!(
        leaderboard(&same_uid, &[]),
        Err(ScoringError::DuplicateUid { uid: 0 })
    );
    let same_hotkey = [miner(0, "a", BASE), miner(1, "a", BASE)];
    assert_eq!(
        leaderboard(&same_hotkey, &[]),
        Err(ScoringError::DuplicateHotkey { hotkey: "a".into() })
    );
}
