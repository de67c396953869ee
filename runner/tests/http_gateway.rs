//! The HTTP client of the gateway keeps every request, and the run token
//! with it, on the route it names under the gateway's base path, whatever
//! service name it is handed.

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
