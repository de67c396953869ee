//! Every attack a hostile agent can make ends in its documented outcome,
//! with a message that says what happened, and well-behaved runs going on at
//! the same time finish unaffected.

#![allow(clippy::unwrap_used)] // a test that expects an error unwraps it

mod common;

use std::time::Duration;

use common::{event, invalid_reason, load, reasoning, run, run_with, runner, scripted};
use sooth_runner::{LoadError, RunOutcome};
use sooth_test_agents::hostile;

const SHORT: Option<Duration> = Some(Duration::from_millis(600));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_loop_is_killed_at_the_deadline() {
    let runner = runner();
    let agent = load(&runner, &hostile()).await;
    let report = run_with(&runner, &agent, &event("e", "spin"), scripted(""), SHORT).await;
    assert_eq!(report.outcome, RunOutcome::Timeout { limit_ms: 600 });
    assert!(report.duration >= Duration::from_millis(600));
    assert!(
        report.duration < Duration::from_secs(3),
        "took {:?}",
        report.duration
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_inside_host_calls_are_killed_at_the_deadline() {
    let runner = runner();
    let agent = load(&runner, &hostile()).await;
    let sleeper = run_with(&runner, &agent, &event("a", "sleep"), scripted(""), SHORT).await;
    assert_eq!(sleeper.outcome, RunOutcome::Timeout { limit_ms: 600 });
    let stuck_gateway =
        scripted("[[rule]]\nservice = \"chat\"\ndelay_ms = 3600000\ncontent = \"0.9\"\n");
    let waiter = run_with(
        &runner,
        &agent,
        &event("b", "gateway-wait"),
        stuck_gateway,
        SHORT,
    )
    .await;
    assert_eq!(waiter.outcome, RunOutcome::Timeout { limit_ms: 600 });
    assert!(
        waiter.gateway.calls.is_empty(),
        "an unfinished call has no outcome to record"
    );
    assert_eq!(waiter.gateway.call_count(), 1, "but it was made");
    assert!(waiter.duration < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_cap() {
    let runner = runner();
    let agent = load(&runner, &hostile()).await;
    let report = run(&runner, &agent, &event("e", "memory-bomb")).await;
    assert_eq!(
        report.outcome,
        RunOutcome::MemoryExceeded {
            limit_bytes: 64 << 20
        }
    );
    assert!(
        report
            .outcome
            .reason()
            .is_some_and(|r| r.contains("memory limit"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_panic_and_trap_are_traps() {
    let runner = runner();
    let agent = load(&runner, &hostile()).await;
    let recursion = run(&runner, &agent, &event("r", "recursion")).await;
    let RunOutcome::Trap { message } = &recursion.outcome else {
        panic!("{:?}", recursion.outcome)
    };
    assert!(message.contains("stack"), "{message}");

    let panic = run(&runner, &agent, &event("p", "panic")).await;
    assert!(
        matches!(panic.outcome, RunOutcome::Trap { .. }),
        "{:?}",
        panic.outcome
    );
    assert!(
        panic.logs.text.contains("panics on purpose"),
        "panic message captured: {:?}",
        panic.logs.text
    );

    let trap = run(&runner, &agent, &event("t", "trap")).await;
    let RunOutcome::Trap { message } = &trap.outcome else {
        panic!("{:?}", trap.outcome)
    };
    assert!(message.contains("unreachable"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_are_validated_and_clipped() {
    let runner = runner();
    let agent = load(&runner, &hostile()).await;
    for title in ["nan", "infinity"] {
        let reason = invalid_reason(&run(&runner, &agent, &event("e", title)).await);
        assert!(reason.contains("not a finite number"), "{title}: {reason}");
    }
    let below = run(&runner, &agent, &event("e", "minus-three")).await;
    assert_eq!(below.outcome.probability(), Some(0.0));
    assert!(matches!(below.outcome, RunOutcome::Prediction { raw, .. } if raw == -3.0));
    let above = run(&runner, &agent, &event("e", "seven")).await;
    assert_eq!(above.outcome.probability(), Some(1.0));

    let reason = invalid_reason(&run(&runner, &agent, &event("e1", "wrong-id")).await);
    assert!(
        reason.contains("\"e1-not\"") && reason.contains("not \"e1\""),
        "{reason}"
    );

    let reason = invalid_reason(&run(&runner, &agent, &event("e", "error")).await);
    assert!(reason.contains("the hostile agent refuses"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_truncated_and_the_forecast_kept() {
    let runner = runner();
    let agent = load(&runner, &hostile()).await;
    let report = run(&runner, &agent, &event("e", "log-flood")).await;
    assert_eq!(report.outcome.probability(), Some(0.6));
    assert_eq!(report.logs.text.len(), 64 << 10);
    assert_eq!(report.logs.dropped_bytes, (100 << 20) - (64 << 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_filesystem_no_sockets_no_environment() {
    let runner = runner();
    let agent = load(&runner, &hostile()).await;
    let files = reasoning(run(&runner, &agent, &event("e", "file")).await);
    assert!(
        files.starts_with("read=Err(")
            && files.contains("list=Err(")
            && files.contains("write=Err("),
        "{files}"
    );
    let sockets = reasoning(run(&runner, &agent, &event("e", "socket")).await);
    assert!(
        sockets.starts_with("tcp=Err(") && sockets.contains("udp=Err("),
        "{sockets}"
    );
    let env = reasoning(run(&runner, &agent, &event("e", "env")).await);
    assert_eq!(env, "vars=0 args=0 home=None");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_reads_the_event_creation_and_random_is_seeded() {
    let runner = runner();
    let agent = load(&runner, &hostile()).await;
    let now: i64 = reasoning(run(&runner, &agent, &event("e", "clock")).await)
        .parse()
        .expect("seconds");
    assert!(
        (1_750_000_000..1_750_000_005).contains(&now),
        "agent saw {now}"
    );

    let first = reasoning(run(&runner, &agent, &event("same", "random")).await);
    let again = reasoning(run(&runner, &agent, &event("same", "random")).await);
    let other = reasoning(run(&runner, &agent, &event("other", "random")).await);
    assert_eq!(first, again, "a run replays exactly");
    assert_ne!(first, other, "another event draws other numbers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_components_are_refused_before_they_run() {
    let runner = runner();
    assert_eq!(
        runner.load(b"this is not wasm at all").await.unwrap_err(),
        LoadError::NotWasm
    );
    assert_eq!(runner.load(b"").await.unwrap_err(), LoadError::NotWasm);
    let core = wat::parse_str("(module (func (export \"f\")))").expect("wat");
    assert_eq!(runner.load(&core).await.unwrap_err(), LoadError::CoreModule);

    let evil = wat::parse_str(
        r#"(component
            (import "evil:net/socket@1.0.0" (instance (export "connect" (func))))
        )"#,
    )
    .expect("wat");
    let error = runner.load(&evil).await.unwrap_err();
    assert_eq!(
        error,
        LoadError::ForbiddenImport("evil:net/socket@1.0.0".into())
    );
    assert!(error.to_string().contains("evil:net/socket@1.0.0"));

    let exportless = wat::parse_str("(component)").expect("wat");
    assert!(matches!(
        runner.load(&exportless).await.unwrap_err(),
        LoadError::MissingExport(_)
    ));

    let mut truncated = std::fs::read(hostile()).expect("agent");
    truncated.truncate(truncated.len() / 2);
    let error = runner.load(&truncated).await.unwrap_err();
    assert!(matches!(error, LoadError::Invalid(_)), "{error:?}");

    let small = sooth_runner::Runner::new(sooth_runner::RunnerConfig {
        max_component_bytes: 1000,
        ..common::config()
    })
    .expect("runner");
    let big = std::fs::read(hostile()).expect("agent");
    assert!(matches!(
        small.load(&big).await.unwrap_err(),
        LoadError::TooLarge { limit: 1000, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_behaved_runs_finish_unaffected_beside_hostile_ones() {
    let runner = runner();
    let agent = load(&runner, &hostile()).await;
    let stuck = scripted("[[rule]]\nservice = \"chat\"\ndelay_ms = 3600000\ncontent = \"0.9\"\n");
    let limit = Some(Duration::from_secs(3));
    let mut attacks = Vec::new();
    for (i, title) in [
        "spin",
        "spin",
        "sleep",
        "gateway-wait",
        "memory-bomb",
        "recursion",
        "log-flood",
        "panic",
    ]
    .into_iter()
    .enumerate()
    {
        let (runner, agent, stuck) = (runner.clone(), agent.clone(), stuck.clone());
        attacks.push(tokio::spawn(async move {
            run_with(
                &runner,
                &agent,
                &event(&format!("attack-{i}"), title),
                stuck,
                limit,
            )
            .await
        }));
    }
    // Let the attacks get going before the honest runs start.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut honest = Vec::new();
    for i in 0..50 {
        let (runner, agent) = (runner.clone(), agent.clone());
        honest.push(tokio::spawn(async move {
            run(&runner, &agent, &event(&format!("honest-{i}"), "fine")).await
        }));
    }
    for task in honest {
        let report = task.await.expect("task");
        assert_eq!(report.outcome.probability(), Some(0.42));
        assert!(
            report.duration < Duration::from_secs(1),
            "an honest run took {:?}",
            report.duration
        );
    }
    for task in attacks {
        let report = task.await.expect("task");
        assert!(
            report.outcome.probability().is_none() || report.logs.truncated(),
            "{:?}",
            report.outcome
        );
    }
}

/// Every kind of gateway flood: the run is killed at its deadline, every
/// call is counted, the calls past the ceiling never reach the gateway and
/// only the first calls are kept in detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_floods_are_counted_capped_and_recorded_within_bounds() {
    let runner = sooth_runner::Runner::new(sooth_runner::RunnerConfig {
        max_gateway_calls: 200,
        max_recorded_calls: 16,
        ..common::config()
    })
    .expect("runner");
    let agent = load(&runner, &hostile()).await;
    let limit = Some(Duration::from_millis(1500));
    for title in ["chat-loop", "search-loop", "call-loop", "long-name-loop"] {
        let report = run_with(&runner, &agent, &event("e", title), scripted(""), limit).await;
        assert_eq!(
            report.outcome,
            RunOutcome::Timeout { limit_ms: 1500 },
            "{title}"
        );
        let usage = &report.gateway;
        assert!(
            usage.call_count() > 1000,
            "{title}: a tight loop made only {} calls",
            usage.call_count()
        );
        assert_eq!(
            usage.calls.len(),
            16,
            "{title}: details of the first 16 only"
        );
        assert_eq!(usage.unrecorded_calls(), usage.call_count() - 16, "{title}");
        let forwarded = usage.call_count() - usage.refused_calls;
        if title == "long-name-loop" {
            assert_eq!(forwarded, 0, "no call with a bad name reaches the gateway");
            assert!(
                usage
                    .calls
                    .iter()
                    .all(|call| call.service == "<invalid>" && call.status == "bad-request"),
                "{:?}",
                usage.calls[0]
            );
        } else {
            assert_eq!(
                forwarded, 200,
                "{title}: the gateway saw exactly the ceiling"
            );
            assert!(
                usage.calls.iter().all(|call| call.status == "not-found"),
                "{title}: {:?}",
                usage.calls[0]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_ceiling_fail_with_a_clear_error() {
    let runner = sooth_runner::Runner::new(sooth_runner::RunnerConfig {
        max_gateway_calls: 0,
        ..common::config()
    })
    .expect("runner");
    let agent = load(&runner, &hostile()).await;
    let gateway = scripted("[[rule]]\nservice = \"chat\"\ncontent = \"0.9\"\n");
    let report = run_with(&runner, &agent, &event("e", "gateway"), gateway, None).await;
    let reason = invalid_reason(&report);
    assert!(
        reason.contains("budget exceeded") && reason.contains("limit of 0 gateway calls"),
        "{reason}"
    );
    assert_eq!(report.gateway.call_count(), 1);
    assert_eq!(report.gateway.refused_calls, 1);
    assert_eq!(report.gateway.calls[0].status, "budget-exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_names_that_walk_paths_are_refused_before_any_request() {
    let runner = runner();
    let agent = load(&runner, &hostile()).await;
    // A gateway that would answer every service the names try to reach.
    let gateway = scripted(
        "[[rule]]\nservice = \"chat\"\ncontent = \"0.9\"\n\
         [[rule]]\nservice = \"echo\"\nbody = '{\"reached\": true}'\n",
    );
    let answers =
        reasoning(run_with(&runner, &agent, &event("e", "traversal"), gateway, None).await);
    let lines: Vec<&str> = answers.lines().collect();
    assert_eq!(lines.len(), 5, "{answers}");
    for line in lines {
        assert!(
            line.contains("bad request") && line.contains("lowercase ASCII letters"),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_resources_a_guest_never_drops_are_capped() {
    let runner = runner();
    let agent = load(&runner, &hostile()).await;
    let report = run_with(
        &runner,
        &agent,
        &event("e", "handle-flood"),
        scripted(""),
        Some(Duration::from_secs(20)),
    )
    .await;
    let RunOutcome::Trap { message } = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert!(
        report.duration < Duration::from_secs(20),
        "stopped by the cap, not the deadline: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predict_of_the_wrong_type_is_refused_at_load() {
    let runner = runner();
    let wrong_parameter = wat::parse_str(
        r#"(component
            (core module $m (func (export "predict") (param i32) (result i32) local.get 0))
            (core instance $i (instantiate $m))
            (func $predict (param "event" u32) (result u32) (canon lift (core func $i "predict")))
            (instance $agent (export "predict" (func $predict)))
            (export "sooth:agent/agent@0.1.0" (instance $agent))
        )"#,
    )
    .expect("wat");
    let error = runner.load(&wrong_parameter).await.unwrap_err();
    let LoadError::MissingExport(reason) = &error else {
        panic!("{error:?}")
    };
    assert!(
        reason.contains("takes something other than the contract's `event` record"),
        "{reason}"
    );
    assert!(error.is_component_fault());

    let no_parameter = wat::parse_str(
        r#"(component
            (core module $m (func (export "predict") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func $predict (result u32) (canon lift (core func $i "predict")))
            (instance $agent (export "predict" (func $predict)))
            (export "sooth:agent/agent@0.1.0" (instance $agent))
        )"#,
    )
    .expect("wat");
    let error = runner.load(&no_parameter).await.unwrap_err();
    assert!(
        error.to_string().contains("`predict` takes 0 parameters"),
        "{error}"
    );

    let no_interface = wat::parse_str(
        r#"(component
            (core module $m (func (export "predict") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func $predict (result u32) (canon lift (core func $i "predict")))
            (export "predict" (func $predict))
        )"#,
    )
    .expect("wat");
    let error = runner.load(&no_interface).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("does not export `sooth:agent/agent@0.1.0`"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_that_ask_for_too_much_are_refused_as_their_own_fault() {
    let runner = runner();
    let cases = [
        // A minimum of 4 GiB, over the 64 MiB cap of these tests.
        (
            "(component (core module $m (memory 65536)) (core instance (instantiate $m)))",
            "memory",
        ),
        // Two memories in one module.
        (
            "(component (core module $m (memory 1) (memory 1)) (core instance (instantiate $m)))",
            "memor",
        ),
    ];
    for (text, topic) in cases {
        let bytes = wat::parse_str(text).expect("wat");
        let error = runner.load(&bytes).await.unwrap_err();
        let LoadError::OverSandboxLimits(reason) = &error else {
            panic!("{text}: {error:?}")
        };
        assert!(error.is_component_fault(), "{text}");
        assert!(reason.contains(topic), "{text}: {reason}");
        assert!(
            error
                .to_string()
                .starts_with("component asks for more than the sandbox allows"),
            "{error}"
        );
    }
}
