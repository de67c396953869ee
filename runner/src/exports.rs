//! What a component must export: `sooth:agent/agent.predict` with exactly
//! the contract's type. wasmtime checks an export's type only when an
//! instance is made, so a component with a mistyped `predict` would load and
//! then fail every run; checking here refuses it once, at load, saying what
//! is wrong.

use wasmtime::Engine;
use wasmtime::component::types::{ComponentItem, Record};
use wasmtime::component::{Component, Type};

/// The exported interface, as named in `wit/sooth.wit`.
const AGENT_INTERFACE: &str = "sooth:agent/agent@0.1.0";

/// The contract's `event` record, field by field in declaration order.
const EVENT_FIELDS: &[(&str, Type)] = &[
    ("id", Type::String),
    ("kind", Type::String),
    ("title", Type::String),
    ("description", Type::String),
    ("created-at", Type::S64),
    ("cutoff", Type::S64),
    ("metadata", Type::String),
];

/// Why the export does not match; `None` when it does.
pub(crate) fn predict_mismatch(engine: &Engine, component: &Component) -> Option<String> {
    let ty = component.component_type();
    let Some(interface) = ty.get_export(engine, AGENT_INTERFACE) else {
        return Some(format!("it does not export `{AGENT_INTERFACE}`"));
    };
    let ComponentItem::ComponentInstance(interface) = interface.ty else {
        return Some(format!("its export `{AGENT_INTERFACE}` is not an instance"));
    };
    let Some(predict) = interface.get_export(engine, "predict") else {
        return Some(format!("`{AGENT_INTERFACE}` has no `predict` function"));
    };
    let ComponentItem::ComponentFunc(predict) = predict.ty else {
        return Some("`predict` is not a function".to_owned());
    };
    let wrong = |what: &str| {
        Some(format!(
            "`predict` {what}; the contract's is `predict: func(event: event) -> result<forecast, string>`"
        ))
    };
    if predict.async_() {
        return wrong("is async");
    }
    let params: Vec<(&str, Type)> = predict.params().collect();
    match params.as_slice() {
        [(_, Type::Record(event))] if record_is(event, EVENT_FIELDS) => {}
        [(_, _)] => return wrong("takes something other than the contract's `event` record"),
        _ => return wrong(&format!("takes {} parameters", params.len())),
    }
    let results: Vec<Type> = predict.results().collect();
    let [Type::Result(result)] = results.as_slice() else {
        return wrong("does not return a `result`");
    };
    let ok_is_forecast =
        matches!(result.ok(), Some(Type::Record(forecast)) if forecast_is(&forecast));
    if !ok_is_forecast || result.err() != Some(Type::String) {
        return wrong("returns a result other than `result<forecast, string>`");
    }
    None
}

fn record_is(record: &Record, expected: &[(&str, Type)]) -> bool {
    record.fields().len() == expected.len()
        && record
            .fields()
            .zip(expected)
            .all(|(field, (name, ty))| field.name == *name && field.ty == *ty)
}

fn forecast_is(record: &Record) -> bool {
    let fields: Vec<_> = record.fields().collect();
    match fields.as_slice() {
        [event_id, probability, reasoning] => {
            event_id.name == "event-id"
                && event_id.ty == Type::String
                && probability.name == "probability"
                && probability.ty == Type::Float64
                && reasoning.name == "reasoning"
                && matches!(&reasoning.ty, Type::Option(inner) if inner.ty() == Type::String)
        }
        _ => false,
    }
}
