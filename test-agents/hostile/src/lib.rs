//! A hostile agent for the runner's tests: the event's title names the
//! misbehaviour (`spin`, `memory-bomb`, `panic`, ...); anything else gets a
//! well-behaved 0.42. One component covers every attack that a Rust guest
//! can make, so the suite builds it once.

use std::hash::BuildHasher;
use std::io::Write;

use sooth_sdk::gateway::{self, ChatMessage, ChatRequest, SearchRequest};
use sooth_sdk::{Event, Forecast};

fn with(event: &Event, probability: f64, reasoning: String) -> Result<Forecast, String> {
    Ok(Forecast {
        event_id: event.id.clone(),
        probability,
        reasoning: Some(reasoning),
    })
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    // black_box keeps the optimizer from turning this into a loop.
    std::hint::black_box(depth) + recurse(std::hint::black_box(depth + 1))
}

fn forecast(event: Event) -> Result<Forecast, String> {
    match event.title.as_str() {
        "spin" => {
            let mut counter = 0u64;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            with(&event, 0.5, "woke up".into())
        }
        "gateway-wait" | "gateway" => {
            let request = ChatRequest {
                model: "slow/model".into(),
                messages: vec![ChatMessage::user(event.title.clone())],
                temperature: None,
                max_tokens: Some(8),
            };
            match gateway::chat(&request) {
                Ok(answer) => {
                    let p = sooth_sdk::probability::parse(&answer.content).unwrap_or(0.5);
                    with(&event, p, format!("cost {}", answer.cost_usd))
                }
                Err(error) => Err(error.describe()),
            }
        }
        "memory-bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "recursion" => with(&event, recurse(0) as f64, "unreachable".into()),
        "panic" => panic!("the hostile agent panics on purpose"),
        "trap" => core::arch::wasm32::unreachable(),
        "nan" => with(&event, f64::NAN, "nan".into()),
        "infinity" => with(&event, f64::INFINITY, "infinity".into()),
        "minus-three" => with(&event, -3.0, "below".into()),
        "seven" => with(&event, 7.0, "above".into()),
        "wrong-id" => Ok(Forecast {
            event_id: format!("{}-not", event.id),
            probability: 0.5,
            reasoning: None,
        }),
        "error" => Err("the hostile agent refuses".into()),
        // Gateway floods: each loops on one kind of call, ignoring every
        // answer, until the run is killed.
        "chat-loop" => loop {
            let request = ChatRequest {
                model: "flood/model".into(),
                messages: vec![ChatMessage::user("again")],
                temperature: None,
                max_tokens: Some(1),
            };
            let _ = std::hint::black_box(gateway::chat(&request));
        },
        "search-loop" => loop {
            let request = SearchRequest {
                query: "again".into(),
                max_results: Some(1),
                start_date: None,
                end_date: None,
            };
            let _ = std::hint::black_box(gateway::search(&request));
        },
        "call-loop" => loop {
            let _ = std::hint::black_box(gateway::call("nope", "{}"));
        },
        "long-name-loop" => {
            // Just under the host's 4 MiB request limit, as the name alone.
            let name = "a".repeat((4 << 20) - 16);
            loop {
                let _ = std::hint::black_box(gateway::call(&name, "{}"));
            }
        }
        "search-once" => {
            // The event's id as the query: two events, two cache keys.
            let request = SearchRequest {
                query: event.id.clone(),
                max_results: Some(1),
                start_date: None,
                end_date: None,
            };
            match gateway::search(&request) {
                Ok(answer) => with(&event, 0.5, format!("cost {}", answer.cost_usd)),
                Err(error) => Err(error.describe()),
            }
        }
        "traversal" => {
            let answers: Vec<String> = [
                "../chat",
                "%2e%2e/chat",
                "echo/../../chat",
                "..",
                "chat?x=1",
            ]
            .iter()
            .map(|name| match gateway::call(name, "{}") {
                Ok(body) => format!("{name}=ok:{body}"),
                Err(error) => format!("{name}={}", error.describe()),
            })
            .collect();
            with(&event, 0.5, answers.join("\n"))
        }
        "handle-flood" => loop {
            // Host-side resources the guest never drops.
            let pollable = wasip2::clocks::monotonic_clock::subscribe_duration(1_000_000_000);
            std::mem::forget(pollable);
        },
        "log-flood" => {
            let line = vec![b'x'; 1 << 20];
            let mut stdout = std::io::stdout();
            for _ in 0..100 {
                let _ = stdout.write_all(&line);
            }
            with(&event, 0.6, "flooded".into())
        }
        "file" => {
            let read = std::fs::read_to_string("/etc/passwd").map(|t| t.len());
            let list = std::fs::read_dir(".").map(|d| d.count());
            let write = std::fs::write("escape.txt", b"x");
            with(
                &event,
                0.5,
                format!("read={read:?} list={list:?} write={write:?}"),
            )
        }
        "socket" => {
            let tcp = std::net::TcpStream::connect("127.0.0.1:5432").map(|_| ());
            let udp = std::net::UdpSocket::bind("0.0.0.0:0").map(|_| ());
            with(&event, 0.5, format!("tcp={tcp:?} udp={udp:?}"))
        }
        "env" => {
            let count = std::env::vars().count();
            let args = std::env::args().count();
            let home = std::env::var("HOME").ok();
            with(
                &event,
                0.5,
                format!("vars={count} args={args} home={home:?}"),
            )
        }
        "clock" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            with(&event, 0.5, format!("{now}"))
        }
        "random" => {
            let state = std::collections::hash_map::RandomState::new();
            with(&event, 0.5, format!("{}", state.hash_one(0u64)))
        }
        _ => with(&event, 0.42, "well-behaved".into()),
    }
}

sooth_sdk::register!(forecast);
