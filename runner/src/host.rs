//! The host side of the WIT contract: per-run state, the `gateway` and `log`
//! imports, and the conversions between generated and public types.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::gateway::{
    self as api, Gateway, GatewayCall, GatewayRequest, GatewayResponse, GatewayUsage, RunContext,
};
use crate::limits::RunLimiter;
use crate::logs::LogSink;

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

/// Everything one run's store holds.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: RunLimiter,
    pub(crate) logs: LogSink,
    pub(crate) gateway: Arc<dyn Gateway>,
    pub(crate) run: RunContext,
    pub(crate) usage: GatewayUsage,
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
    /// Send one request through the gateway and record it; a success comes
    /// with what it cost, which the agent is told.
    async fn forward(
        &mut self,
        request: GatewayRequest,
    ) -> Result<(GatewayResponse, f64), api::GatewayError> {
        let started = Instant::now();
        let service = request.service().to_owned();
        let request_hash = request.hash();
        let answer = self.gateway.handle(&self.run, request).await;
        self.usage.calls.push(GatewayCall {
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
        });
        answer.result.map(|response| (response, answer.cost_usd))
    }
}

fn too_large(size: usize) -> Option<wit::GatewayError> {
    (size > MAX_REQUEST_BYTES).then(|| {
        wit::GatewayError::BadRequest(format!(
            "request of {size} bytes is over the {MAX_REQUEST_BYTES} byte limit"
        ))
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
        let size = request.model.len()
            + request
                .messages
                .iter()
                .map(|m| m.role.len() + m.content.len())
                .sum::<usize>();
        if let Some(error) = too_large(size) {
            return Err(error);
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
        if let Some(error) = too_large(request.query.len()) {
            return Err(error);
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
        if let Some(error) = too_large(service.len() + body.len()) {
            return Err(error);
        }
        if serde_json::from_str::<serde_json::Value>(&body).is_err() {
            return Err(wit::GatewayError::BadRequest(format!(
                "the body for service {service:?} is not valid JSON"
            )));
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
