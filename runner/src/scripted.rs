//! A gateway that answers from a file of canned responses: deterministic
//! tests for the project and for miners (`sooth agent test --responses`).
//!
//! The file is TOML (or JSON with the same shape) holding a list of rules;
//! the first rule that matches a request answers it:
//!
//! ```toml
//! [[rule]]
//! service = "chat"                  # chat, search, or a named service
//! model = "deepseek-ai/DeepSeek-V3" # optional: only this model
//! contains = "Bitcoin"              # optional: the prompt/query/body contains this
//! times = 1                         # optional: answer only this many times
//! delay_ms = 20                     # optional: wait before answering
//! cost_usd = 0.0002                 # optional: reported cost
//! content = "Probability: 0.72"     # the chat answer
//!
//! [[rule]]
//! service = "chat"
//! error = "rate-limited"            # or budget-exceeded, unavailable, not-found, bad-request, timeout
//! retry_after_ms = 500
//!
//! [[rule]]
//! service = "search"
//! results = [{ title = "T", url = "https://example.org", snippet = "..." }]
//!
//! [[rule]]
//! service = "weather"
//! body = '{"temp": 21}'
//! ```
//!
//! A request no rule matches gets `not-found`.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use sooth_protocol::{
    ChatResponse, GatewayError, GatewayRequest, GatewayResponse, SearchResponse, SearchResult,
    TokenUsage,
};

use crate::gateway::{Gateway, GatewayAnswer, RunContext};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
    #[serde(default)]
    rule: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    service: String,
    model: Option<String>,
    contains: Option<String>,
    times: Option<u32>,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    cost_usd: f64,
    content: Option<String>,
    #[serde(default)]
    input_tokens: u32,
    #[serde(default)]
    output_tokens: u32,
    results: Option<Vec<SearchResult>>,
    body: Option<String>,
    error: Option<String>,
    #[serde(default)]
    retry_after_ms: u32,
    #[serde(default)]
    message: String,
}

/// A responses file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file cannot be read.
    #[error("cannot read responses file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("responses file {path} is invalid")]
    Parse {
        /// The file.
        path: String,
        /// What was wrong: the TOML or JSON parser's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A rule is inconsistent.
    #[error("responses file {path}, rule {index}: {message}")]
    Rule {
        /// The file.
        path: String,
        /// 1-based rule number.
        index: usize,
        /// What was wrong.
        message: String,
    },
}

/// Canned answers; see the module documentation for the file format.
#[derive(Debug)]
pub struct ScriptedGateway {
    rules: Vec<Rule>,
    uses: Mutex<Vec<u32>>,
}

fn parse_error_kind(rule: &Rule) -> Result<GatewayError, String> {
    let message = rule.message.clone();
    Ok(match rule.error.as_deref().unwrap_or_default() {
        "budget-exceeded" => GatewayError::BudgetExceeded { message },
        "rate-limited" => GatewayError::RateLimited {
            retry_after_ms: rule.retry_after_ms,
        },
        "unavailable" => GatewayError::Unavailable { message },
        "not-found" => GatewayError::NotFound { message },
        "bad-request" => GatewayError::BadRequest { message },
        "timeout" => GatewayError::Timeout,
        other => return Err(format!("unknown error kind {other:?}")),
    })
}

impl ScriptedGateway {
    /// A gateway that answers every request with `not-found`.
    pub fn empty() -> Self {
        Self {
            rules: Vec::new(),
            uses: Mutex::new(Vec::new()),
        }
    }

    /// Read rules from a TOML file, or JSON when the name ends in `.json`.
    ///
    /// # Errors
    ///
    /// [`ScriptError`] when the file cannot be read or parsed, or a rule
    /// answers with nothing or with two things.
    pub fn from_file(path: &Path) -> Result<Self, ScriptError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: origin.clone(),
            source,
        })?;
        let json = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        Self::from_str(&text, json, &origin)
    }

    /// Parse rules from text; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// As [`ScriptedGateway::from_file`].
    pub fn from_str(text: &str, json: bool, origin: &str) -> Result<Self, ScriptError> {
        let parsed: Result<ScriptFile, Box<dyn std::error::Error + Send + Sync>> = if json {
            serde_json::from_str(text).map_err(Into::into)
        } else {
            toml::from_str(text).map_err(Into::into)
        };
        let file = parsed.map_err(|source| ScriptError::Parse {
            path: origin.to_owned(),
            source,
        })?;
        for (index, rule) in file.rule.iter().enumerate() {
            let rule_error = |message: String| ScriptError::Rule {
                path: origin.to_owned(),
                index: index + 1,
                message,
            };
            let answers = [
                rule.content.is_some(),
                rule.results.is_some(),
                rule.body.is_some(),
                rule.error.is_some(),
            ];
            if answers.iter().filter(|set| **set).count() != 1 {
                return Err(rule_error(
                    "give exactly one of content, results, body or error".into(),
                ));
            }
            if rule.error.is_some() {
                parse_error_kind(rule).map_err(rule_error)?;
            }
            let fits = match rule.service.as_str() {
                "chat" => rule.results.is_none() && rule.body.is_none(),
                "search" => rule.content.is_none() && rule.body.is_none(),
                _ => rule.content.is_none() && rule.results.is_none(),
            };
            if !fits {
                return Err(rule_error(format!(
                    "the answer does not fit service {:?}",
                    rule.service
                )));
            }
            if let Some(body) = &rule.body
                && serde_json::from_str::<serde_json::Value>(body).is_err()
            {
                return Err(rule_error("body is not valid JSON".into()));
            }
            if !rule.cost_usd.is_finite() || rule.cost_usd < 0.0 {
                return Err(rule_error("cost_usd must be a non-negative number".into()));
            }
        }
        let uses = Mutex::new(vec![0; file.rule.len()]);
        Ok(Self {
            rules: file.rule,
            uses,
        })
    }

    fn pick(&self, request: &GatewayRequest) -> Option<Rule> {
        let (model, text) = match request {
            GatewayRequest::Chat(chat) => (
                Some(chat.model.as_str()),
                chat.messages
                    .iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            GatewayRequest::Search(search) => (None, search.query.clone()),
            GatewayRequest::Call { body, .. } => (None, body.clone()),
        };
        let mut uses = self
            .uses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let index = self.rules.iter().enumerate().position(|(index, rule)| {
            rule.service == request.service()
                && rule.model.as_deref().is_none_or(|m| Some(m) == model)
                && rule.contains.as_deref().is_none_or(|c| text.contains(c))
                && rule.times.is_none_or(|times| uses[index] < times)
        })?;
        uses[index] += 1;
        Some(self.rules[index].clone())
    }

    fn answer(rule: &Rule, request: &GatewayRequest) -> Result<GatewayResponse, GatewayError> {
        if rule.error.is_some() {
            return Err(parse_error_kind(rule).unwrap_or(GatewayError::Timeout));
        }
        Ok(match request {
            GatewayRequest::Chat(chat) => GatewayResponse::Chat(ChatResponse {
                content: rule.content.clone().unwrap_or_default(),
                model: chat.model.clone(),
                usage: TokenUsage {
                    input_tokens: rule.input_tokens,
                    output_tokens: rule.output_tokens,
                },
            }),
            GatewayRequest::Search(_) => GatewayResponse::Search(SearchResponse {
                results: rule.results.clone().unwrap_or_default(),
            }),
            GatewayRequest::Call { .. } => GatewayResponse::Call {
                body: rule.body.clone().unwrap_or_default(),
            },
        })
    }
}

impl Gateway for ScriptedGateway {
    fn handle<'a>(
        &'a self,
        _run: &'a RunContext,
        request: GatewayRequest,
    ) -> BoxFuture<'a, GatewayAnswer> {
        Box::pin(async move {
            let Some(rule) = self.pick(&request) else {
                let what = match &request {
                    GatewayRequest::Chat(chat) => format!("chat with model {:?}", chat.model),
                    other => format!("service {:?}", other.service()),
                };
                return GatewayAnswer::free(Err(GatewayError::NotFound {
                    message: format!("no scripted response for {what}"),
                }));
            };
            if rule.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(rule.delay_ms)).await;
            }
            let result = Self::answer(&rule, &request);
            let cost_usd = if result.is_ok() { rule.cost_usd } else { 0.0 };
            GatewayAnswer {
                result,
                cost_usd,
                cached: false,
                retries: 0,
            }
        })
    }
}
