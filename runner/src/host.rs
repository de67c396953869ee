//! The host side of the WIT contract: per-run state, the `gateway` and `log`
//! imports, and the conversions between generated and public types.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use sooth_protocol::{self as api, GatewayRequest, GatewayResponse, check_service_name};

use crate::gateway::{Gateway, RunContext};
use crate::limits::RunLimiter;
use crate::logs::LogSink;
use crate::usage::{CallLog, GatewayCall};

wasmtime::component::bindgen!({
    path: "../wit/sooth.wit",
    world: "forecaster",
    imports: { default: async },
    exports: { default: async },
});

pub(crate) use exports::sooth::agent::agent::{Event as WitEvent, Forecast as WitForecast};
use sooth::agent::gateway as wit;

/// Largest request an agent may hand the gateway, summed over its strings.
const MAX_REQUEST_BYTES: usize = 4 << 20;

/// How a call to a service name the host refused is recorded.
const INVALID_SERVICE: &str = "<invalid>";

/// Everything one run's store holds.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: RunLimiter,
    pub(crate) logs: LogSink,
    pub(crate) gateway: Arc<dyn Gateway>,
    pub(crate) run: RunContext,
    pub(crate) calls: CallLog,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    /// Counts a call against the run's ceiling before anything else is
    /// done with it, so that a flood past the ceiling costs the host
    /// nothing but a counter.
    fn admit(&mut self, service: &str) -> Result<(), wit::GatewayError> {
        self.calls.admit().map_err(|over| {
            self.refuse(
                service,
                api::GatewayError::BudgetExceeded {
                    message: format!(
                        "this run has made its limit of {} gateway calls",
                        over.limit
                    ),
                },
            )
        })
    }

    /// Records a call the host refused without asking the gateway.
    fn refuse(&mut self, service: &str, error: api::GatewayError) -> wit::GatewayError {
        self.calls.refused();
        self.calls.finished(0.0, || GatewayCall {
            service: service.to_owned(),
            request_hash: String::new(),
            status: error.kind().to_owned(),
            cost_usd: 0.0,
            cached: false,
            retries: 0,
            duration_ms: 0.0,
        });
        error.into()
    }

    /// Send one request through the gateway and record it; a success comes
    /// with what it cost, which the agent is told.
    async fn forward(
        &mut self,
        request: GatewayRequest,
    ) -> Result<(GatewayResponse, f64), api::GatewayError> {
        let started = Instant::now();
        // Hashing a request of megabytes is paid only for the calls whose
        // details are kept.
        let details = self
            .calls
            .keeps_details()
            .then(|| (request.service().to_owned(), request.hash()));
        let answer = self.gateway.handle(&self.run, request).await;
        self.calls.finished(answer.cost_usd, || {
            let (service, request_hash) = details.unwrap_or_default();
            GatewayCall {
                service,
                request_hash,
                status: match &answer.result {
                    Ok(_) => "ok".to_owned(),
                    Err(error) => error.kind().to_owned(),
                },
                cost_usd: answer.cost_usd,
                cached: answer.cached,
                retries: answer.retries,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            }
        });
        answer.result.map(|response| (response, answer.cost_usd))
    }
}

fn too_large(size: usize) -> Option<api::GatewayError> {
    (size > MAX_REQUEST_BYTES).then(|| api::GatewayError::BadRequest {
        message: format!("request of {size} bytes is over the {MAX_REQUEST_BYTES} byte limit"),
    })
}

fn unexpected(service: &str) -> wit::GatewayError {
    wit::GatewayError::Unavailable(format!(
        "the gateway answered a {service} request with another kind of response"
    ))
}

impl From<api::GatewayError> for wit::GatewayError {
    fn from(error: api::GatewayError) -> Self {
        match error {
            api::GatewayError::BudgetExceeded { message } => Self::BudgetExceeded(message),
            api::GatewayError::RateLimited { retry_after_ms } => Self::RateLimited(retry_after_ms),
            api::GatewayError::Unavailable { message } => Self::Unavailable(message),
            api::GatewayError::NotFound { message } => Self::NotFound(message),
            api::GatewayError::BadRequest { message } => Self::BadRequest(message),
            api::GatewayError::Timeout => Self::Timeout,
        }
    }
}

impl sooth::agent::types::Host for HostState {}

impl wit::Host for HostState {
    async fn chat(
        &mut self,
        request: wit::ChatRequest,
    ) -> Result<wit::ChatResponse, wit::GatewayError> {
        self.admit("chat")?;
        let size = request.model.len()
            + request
                .messages
                .iter()
                .map(|m| m.role.len() + m.content.len())
                .sum::<usize>();
        if let Some(error) = too_large(size) {
            return Err(self.refuse("chat", error));
        }
        let request = api::ChatRequest {
            model: request.model,
            messages: request
                .messages
                .into_iter()
                .map(|m| api::ChatMessage {
                    role: m.role,
                    content: m.content,
                })
                .collect(),
            temperature: request.temperature,
            max_tokens: request.max_tokens,
        };
        match self.forward(GatewayRequest::Chat(request)).await? {
            (GatewayResponse::Chat(response), cost_usd) => Ok(wit::ChatResponse {
                content: response.content,
                model: response.model,
                usage: wit::TokenUsage {
                    input_tokens: response.usage.input_tokens,
                    output_tokens: response.usage.output_tokens,
                },
                cost_usd,
            }),
            _ => Err(unexpected("chat")),
        }
    }

    async fn search(
        &mut self,
        request: wit::SearchRequest,
    ) -> Result<wit::SearchResponse, wit::GatewayError> {
        self.admit("search")?;
        if let Some(error) = too_large(request.query.len()) {
            return Err(self.refuse("search", error));
        }
        let request = api::SearchRequest {
            query: request.query,
            max_results: request.max_results,
            start_date: request.start_date,
            end_date: request.end_date,
        };
        match self.forward(GatewayRequest::Search(request)).await? {
            (GatewayResponse::Search(response), cost_usd) => Ok(wit::SearchResponse {
                results: response
                    .results
                    .into_iter()
                    .map(|r| wit::SearchResult {
                        title: r.title,
                        url: r.url,
                        snippet: r.snippet,
                        published: r.published,
                    })
                    .collect(),
                cost_usd,
            }),
            _ => Err(unexpected("search")),
        }
    }

    async fn call(&mut self, service: String, body: String) -> Result<String, wit::GatewayError> {
        // The name becomes a URL path segment and a field of the run's
        // record: nothing but a short name of the fixed alphabet goes on.
        let name_check = check_service_name(&service);
        let label = if name_check.is_ok() {
            service.as_str()
        } else {
            INVALID_SERVICE
        };
        self.admit(label)?;
        if let Err(error) = name_check {
            let error = api::GatewayError::BadRequest {
                message: error.to_string(),
            };
            return Err(self.refuse(INVALID_SERVICE, error));
        }
        if let Some(error) = too_large(body.len()) {
            return Err(self.refuse(&service, error));
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(&body).is_err() {
            let error = api::GatewayError::BadRequest {
                message: format!("the body for service {service:?} is not valid JSON"),
            };
            return Err(self.refuse(&service, error));
        }
        match self.forward(GatewayRequest::Call { service, body }).await? {
            (GatewayResponse::Call { body }, _) => Ok(body),
            _ => Err(unexpected("call")),
        }
    }
}

impl sooth::agent::log::Host for HostState {
    async fn write(&mut self, level: sooth::agent::log::Level, message: String) {
        use sooth::agent::log::Level;
        let tag = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.logs.append(format!("[{tag}] ").as_bytes());
        self.logs.append(message.as_bytes());
        self.logs.append(b"\n");
    }
}
