//! The HTTP client of the gateway keeps every request, and the run token
//! with it, on the route it names under the gateway's base path, whatever
//! service name it is handed; with several gateways it takes them in turn,
//! skips one it cannot connect to, and never sends a call twice that may
//! have been charged.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sooth_runner::{Gateway, GatewayError, GatewayRequest, HttpGateway, RunContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A host that answers `{}` to anything and remembers each request's
/// line and authorization header.
async fn recording_host() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let line = head.lines().next().unwrap_or_default().to_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                let _ = socket.read_exact(&mut body).await;
                let token = head
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                    .map(|l| l.to_owned())
                    .unwrap_or_default();
                log.lock().unwrap().push(format!("{line} | {token}"));
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn run() -> RunContext {
    RunContext {
        run_id: "r".into(),
        event_id: "e".into(),
        agent_hash: "h".into(),
        miner: None,
        deadline: Instant::now() + Duration::from_secs(10),
        token: Some("secret-run-token".into()),
    }
}

fn call(service: &str) -> GatewayRequest {
    GatewayRequest::Call {
        service: service.into(),
        body: "{}".into(),
    }
}

#[tokio::test]
async fn requests_stay_under_the_base_path_and_bad_names_send_nothing() {
    let (host, seen) = recording_host().await;
    let gateway = HttpGateway::new(format!("{host}/prefix/")).unwrap();
    let context = run();
    for name in [
        "../chat",
        "%2e%2e/chat",
        "echo/../../chat",
        "..",
        "echo?x=1",
        "echo#x",
        "",
        "Echo",
    ] {
        let answer = gateway.handle(&context, call(name)).await;
        assert!(
            matches!(answer.result, Err(GatewayError::BadRequest { .. })),
            "{name:?}: {:?}",
            answer.result
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "no request left for a bad name: {:?}",
        seen.lock().unwrap()
    );

    let answer = gateway.handle(&context, call("echo")).await;
    assert!(answer.result.is_ok(), "{:?}", answer.result);
    let chat = sooth_runner::ChatRequest {
        model: "m".into(),
        messages: vec![],
        temperature: None,
        max_tokens: None,
    };
    let _ = gateway.handle(&context, GatewayRequest::Chat(chat)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "POST /prefix/v1/call/echo HTTP/1.1 | authorization: Bearer secret-run-token",
            "POST /prefix/v1/chat HTTP/1.1 | authorization: Bearer secret-run-token",
        ]
    );
}

#[tokio::test]
async fn a_base_url_that_cannot_take_a_path_is_refused() {
    for url in [
        "not a url",
        "mailto:gateway@example.com",
        "ftp://example.com",
        "http://example.com/?q=1",
    ] {
        let error = HttpGateway::new(url).unwrap_err();
        assert!(
            error.to_string().contains("not a usable http(s) base URL"),
            "{url}: {error}"
        );
    }
}

/// An address nothing listens on.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A host that reads each request and closes the connection without answering, counting
/// the requests it took.
async fn cutting_host() -> (String, Arc<Mutex<usize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let taken = Arc::new(Mutex::new(0));
    let count = taken.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                if socket.read(&mut buffer).await.unwrap_or(0) > 0 {
                    *count.lock().unwrap() += 1;
                }
            });
        }
    });
    (format!("http://{addr}"), taken)
}

#[tokio::test]
async fn several_gateways_take_calls_in_turn_and_one_that_refuses_connections_is_skipped() {
    let (first, first_seen) = recording_host().await;
    let (second, second_seen) = recording_host().await;
    let dead = closed_port().await;
    let gateway = HttpGateway::with_failover([first, dead, second]).unwrap();
    let context = run();
    for _ in 0..12 {
        let answer = gateway.handle(&context, call("echo")).await;
        assert!(answer.result.is_ok(), "{:?}", answer.result);
    }
    // Every call answered: the dead gateway's turns went to the others.
    let (first, second) = (
        first_seen.lock().unwrap().len(),
        second_seen.lock().unwrap().len(),
    );
    assert_eq!(first + second, 12);
    assert!(first >= 4 && second >= 4, "{first} and {second}");
}

#[tokio::test]
async fn a_call_cut_mid_way_is_not_sent_again_and_that_gateway_goes_last() {
    let (cutter, cut) = cutting_host().await;
    let (live, live_seen) = recording_host().await;
    let gateway = HttpGateway::with_failover([cutter, live]).unwrap();
    let context = run();
    // The first call goes to the gateway that cuts: it may have been charged there, so the
    // agent hears `unavailable` rather than a second charge elsewhere.
    let answer = gateway.handle(&context, call("echo")).await;
    match &answer.result {
        Err(GatewayError::Unavailable { message }) => {
            assert!(message.contains("gateway"), "{message}");
            assert!(!message.contains("127.0.0.1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (*cut.lock().unwrap(), live_seen.lock().unwrap().len()),
        (1, 0)
    );
    // Then, while it is down, every call goes to the other first, its own turns included.
    for _ in 0..4 {
        let answer = gateway.handle(&context, call("echo")).await;
        assert!(answer.result.is_ok(), "{:?}", answer.result);
    }
    assert_eq!(
        (*cut.lock().unwrap(), live_seen.lock().unwrap().len()),
        (1, 4)
    );
}

#[tokio::test]
async fn with_every_gateway_unreachable_the_call_is_unavailable_and_none_is_no_client() {
    let gateway = HttpGateway::with_failover([closed_port().await, closed_port().await]).unwrap();
    let answer = gateway.handle(&run(), call("echo")).await;
    assert!(
        matches!(&answer.result, Err(GatewayError::Unavailable { message }) if message.contains("unreachable")),
        "{:?}",
        answer.result
    );
    let error = HttpGateway::with_failover(Vec::<String>::new()).unwrap_err();
    assert!(error.to_string().contains("no gateway URL"), "{error}");
}
