//! The LLM forecaster: asks the gateway's chat service for a probability and
//! parses it from the answer; on any gateway error or unparseable answer it
//! falls back on the market price, then on the base rate.

use sooth_sdk::gateway::{self, ChatMessage, ChatRequest, RetryPolicy};
use sooth_sdk::{Event, Forecast, log, metadata, probability};

const MODEL: &str = "deepseek-ai/DeepSeek-V3";
const BASE_RATE: f64 = 0.35;

fn prompt(event: &Event) -> String {
    // No timestamps or random data: identical prompts are served from the
    // gateway's cache.
    let mut prompt = format!("Question: {}\n", event.title);
    if !event.description.is_empty() {
        prompt.push_str(&format!("Background: {}\n", event.description));
    }
    if let Some(market) = metadata::market_prob(event) {
        prompt.push_str(&format!("The market currently says {market:.2}.\n"));
    }
    prompt.push_str(
        "Answer with the probability that the answer is yes, as a number between 0 and 1.",
    );
    prompt
}

fn forecast(event: Event) -> Result<Forecast, String> {
    let request = ChatRequest {
        model: MODEL.into(),
        messages: vec![
            ChatMessage::system("You are a careful superforecaster. Reply with one probability."),
            ChatMessage::user(prompt(&event)),
        ],
        temperature: Some(0.0),
        max_tokens: Some(64),
    };
    let fallback = metadata::market_prob(&event).unwrap_or(BASE_RATE);
    match gateway::retry(RetryPolicy::default(), || gateway::chat(&request)) {
        Ok(answer) => match probability::parse(&answer.content) {
            Some(p) => {
                Ok(Forecast::new(&event, p).with_reasoning(format!("{} said {p}", answer.model)))
            }
            None => {
                log::warn(&format!(
                    "no probability in the model's answer: {:?}",
                    answer.content
                ));
                Ok(Forecast::new(&event, fallback).with_reasoning("fallback: unparseable answer"))
            }
        },
        Err(error) => {
            log::warn(&format!("chat failed: {}", error.describe()));
            Ok(Forecast::new(&event, fallback)
                .with_reasoning(format!("fallback: {}", error.describe())))
        }
    }
}

sooth_sdk::register!(forecast);
