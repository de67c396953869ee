//! Budget: a call's worst-case cost is reserved in the ledger before it
//! goes upstream, and the reservation is settled to the real cost (or
//! released) after.

use sooth_protocol::{GatewayError, RunClaims};

use super::answer::Refusal;
use super::{GatewayState, Payer};
use crate::config::ServiceConfig;
use crate::error_chain::Chain;
use crate::ledger::{BudgetScope, LedgerError, Reservation, ReservationId, utc_today};
use crate::metrics::{Metrics, RefusalLabels};

/// Reserves `amount` for `claims`' run on `service_name` under the run's
/// cap and the day cap of the key that pays; a refusal is the agent's
/// budget-exceeded error (or unavailable, when the ledger fails).
pub(super) async fn reserve(
    state: &GatewayState,
    claims: &RunClaims,
    payer: &Payer<'_>,
    service_name: &str,
    service: &ServiceConfig,
    amount: f64,
) -> Result<ReservationId, Refusal> {
    // "*" gives a cap to every service the token does not name.
    let run_cap = claims
        .caps_usd
        .get(service_name)
        .or_else(|| claims.caps_usd.get("*"))
        .copied()
        .unwrap_or(0.0);
    // The higher cap follows the key that pays: the miner's own key on file,
    // not the token's `linked_key` claim, which may be stale (a flag without
    // a key would let the operator's key spend at the linked cap).
    let day_cap = if payer.linked {
        service.linked_per_miner_day_cap_usd
    } else {
        service.per_miner_day_cap_usd
    };
    let reservation = Reservation {
        run_id: claims.run_id.clone(),
        miner: claims.miner.clone(),
        service: service_name.to_owned(),
        day: utc_today(),
        amount_usd: amount,
        run_cap_usd: run_cap,
        day_cap_usd: day_cap,
    };
    state.ledger.reserve(reservation).await.map_err(|error| match error {
        LedgerError::BudgetExceeded { scope, cap_usd, committed_usd, requested_usd } => {
            let scope_name = match scope {
                BudgetScope::Run => "run",
                BudgetScope::MinerDay => "miner_day",
            };
            state.metrics.budget_refusals.get_or_create(&RefusalLabels { service: service_name.to_owned(), scope: scope_name.to_owned() }).inc();
            Refusal::Agent(GatewayError::BudgetExceeded {
                message: format!(
                    "{service_name}: this call may cost up to ${requested_usd:.6}, and ${committed_usd:.6} of the {} cap of ${cap_usd:.6} is committed",
                    if scope_name == "run" { "run's" } else { "miner's daily" }
                ),
            })
        }
        other => {
            tracing::error!(error = %Chain(&other), "ledger failure");
            Refusal::Agent(GatewayError::Unavailable { message: "the gateway's ledger is unavailable".into() })
        }
    })
}

/// Settles reservation `id` to `charge` (USD, and whether it is an estimate)
/// or releases it (`None`); returns what was charged. A failure is logged
/// and charges nothing: the answer is already on its way.
pub(super) async fn close(
    state: &GatewayState,
    service: &str,
    id: ReservationId,
    charge: Option<(f64, bool)>,
) -> f64 {
    let result = match charge {
        Some((usd, estimated)) => state
            .ledger
            .settle(id, usd, estimated)
            .await
            .map(|c| c.charged_usd),
        None => state.ledger.release(id).await.map(|()| 0.0),
    };
    match result {
        Ok(charged) => {
            state
                .metrics
                .spend_usd
                .get_or_create(&Metrics::service(service))
                .inc_by(charged);
            charged
        }
        Err(error) => {
            tracing::error!(error = %Chain(&error), "cannot close a reservation");
            0.0
        }
    }
}
