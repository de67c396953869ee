"""Helpers for sooth forecasting agents written in Python.

The Python counterpart of the Rust crate in `sdk/src`: parsing a probability
out of LLM text, reading an event's metadata, retrying gateway calls and
building the forecast record.

An agent is a module (say `app.py`) with a class named `Agent` that has a
`predict(self, event)` method, built against the `forecaster` world of
`wit/sooth.wit` with componentize-py:

    import sooth_sdk
    import wit_world.exports

    class Agent(wit_world.exports.Agent):
        def predict(self, event):
            p = sooth_sdk.market_prob(event)
            return sooth_sdk.forecast(event, 0.5 if p is None else p)

    componentize-py -d wit/sooth.wit -w forecaster componentize app \
        -p <agent dir> -p sdk/python -o agent.wasm

To refuse an event, raise `componentize_py_types.Err("why")` from `predict`.
A failed gateway call raises `componentize_py_types.Err(variant)` where the
variant is one of `wit_world.imports.gateway.GatewayError_*`.

This module imports the generated bindings (`wit_world`) only inside the
functions that need them, so the pure functions also run, and are tested,
in plain CPython.
"""

import json
import math
import sys
import time

__all__ = [
    "clamp",
    "parse_probability",
    "metadata",
    "number",
    "market_prob",
    "is_retryable",
    "describe",
    "backoff",
    "retry",
    "system",
    "user",
    "forecast",
    "debug",
    "info",
    "warn",
    "error",
]


# --- Probabilities ---------------------------------------------------------


def clamp(probability):
    """Clamp a probability to [0, 1]; NaN becomes 0.5 (no information)."""
    probability = float(probability)
    if math.isnan(probability):
        return 0.5
    return min(max(probability, 0.0), 1.0)


# ASCII-only lower-casing, as Rust's `to_ascii_lowercase`: keeps indices.
_ASCII_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}

# What Rust's `str::trim_start` strips: characters with the Unicode
# White_Space property (Python's `str.isspace` differs slightly).
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def _is_digit(char):
    return "0" <= char <= "9"


def _is_alnum(char):
    return _is_digit(char) or "a" <= char <= "z" or "A" <= char <= "Z"


def parse_probability(text):
    """Find the probability an LLM stated in free text, or None.

    Accepts a percentage (`"73%"`, `"73 %"`) or a plain number in [0, 1]
    (`"0.73"`, `".73"`, `"1"`). Where several appear, the last one after the
    word "probability" wins, else the last one in the text: models tend to
    reason first and answer last. Numbers glued to a preceding letter, digit
    or dot (`"gpt4.5"`) are skipped.
    """
    lower = text.translate(_ASCII_LOWER)
    at = lower.rfind("probability")
    tail = lower if at < 0 else lower[at:]
    found = _last_probability(tail)
    return found if found is not None else _last_probability(lower)


def _last_probability(text):
    found = None
    length = len(text)
    i = 0
    while i < length:
        char = text[i]
        starts_number = _is_digit(char) or (
            char == "." and i + 1 < length and _is_digit(text[i + 1])
        )
        glued_to_word = i > 0 and (_is_alnum(text[i - 1]) or text[i - 1] == ".")
        if not starts_number or glued_to_word:
            i += 1
            continue
        start = i
        while i < length and (_is_digit(text[i]) or text[i] == "."):
            i += 1
        try:
            value = float(text[start:i].rstrip("."))
        except ValueError:  # e.g. "1.2.3"
            continue
        rest = i
        while rest < length and text[rest] in _WHITE_SPACE:
            rest += 1
        if rest < length and text[rest] == "%":
            if 0.0 <= value <= 100.0:
                found = value / 100.0
        elif 0.0 <= value <= 1.0:
            found = value
    return found


# --- Metadata --------------------------------------------------------------


def _reject_constant(name):
    # JSON has no NaN or Infinity; refuse them as serde_json does.
    raise ValueError("invalid JSON constant " + name)


def metadata(event):
    """The event's metadata as a dict; empty when it is not a JSON object."""
    try:
        value = json.loads(event.metadata, parse_constant=_reject_constant)
    except (ValueError, TypeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def number(event, key):
    """A numeric metadata field as a float, when present and finite."""
    value = metadata(event).get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def market_prob(event):
    """The `market_prob` metadata field, when present and within [0, 1]."""
    value = number(event, "market_prob")
    return value if value is not None and 0.0 <= value <= 1.0 else None


# --- Gateway errors and retries --------------------------------------------

_VARIANT_PREFIX = "GatewayError_"


def _variant(error):
    """The gateway-error variant in `error` (an `Err` or the variant itself)
    as (case name, payload), or None when it is not a gateway error."""
    for candidate in (error, getattr(error, "value", None)):
        name = type(candidate).__name__
        if name.startswith(_VARIANT_PREFIX):
            return name[len(_VARIANT_PREFIX):], getattr(candidate, "value", None)
    return None


def is_retryable(error):
    """Whether trying the same gateway call again later may succeed: true for
    rate-limited, unavailable and timeout. Takes the raised `Err` or the
    `GatewayError_*` variant it carries."""
    variant = _variant(error)
    return variant is not None and variant[0] in ("RateLimited", "Unavailable", "Timeout")


def describe(error):
    """A one-line description of a gateway error for logs and reasoning."""
    variant = _variant(error)
    if variant is None:
        return str(getattr(error, "value", error))
    case, value = variant
    if case == "BudgetExceeded":
        return "budget exceeded: {}".format(value)
    if case == "RateLimited":
        return "rate limited, retry after {} ms".format(value)
    if case == "Unavailable":
        return "unavailable: {}".format(value)
    if case == "NotFound":
        return "not found: {}".format(value)
    if case == "BadRequest":
        return "bad request: {}".format(value)
    if case == "Timeout":
        return "timed out"
    return "{}: {}".format(case, value)


def backoff(attempt, error, initial_backoff=0.25, max_backoff=8.0):
    """Seconds to wait after failed attempt number `attempt` (1-based):
    doubling from `initial_backoff`, at least the rate limiter's retry-after,
    at most `max_backoff`."""
    exponential = initial_backoff * (1 << min(max(attempt - 1, 0), 16))
    variant = _variant(error)
    asked = variant[1] / 1000.0 if variant is not None and variant[0] == "RateLimited" else 0.0
    return min(max(exponential, asked), max_backoff)


def retry(operation, attempts=4, initial_backoff=0.25, max_backoff=8.0, sleep=None):
    """Call `operation()` until it returns, raises an error that retrying
    cannot fix, or `attempts` calls (the first included) are spent; re-raises
    the last error. Waiting counts against the run's time limit.

        answer = sooth_sdk.retry(lambda: gateway.chat(request))
    """
    sleep = time.sleep if sleep is None else sleep
    attempt = 1
    while True:
        try:
            return operation()
        except Exception as error:  # componentize_py_types.Err(GatewayError_*)
            if not is_retryable(error) or attempt >= attempts:
                raise
            sleep(backoff(attempt, error, initial_backoff, max_backoff))
            attempt += 1


def system(content):
    """A `system` chat message."""
    from wit_world.imports.gateway import ChatMessage

    return ChatMessage(role="system", content=content)


def user(content):
    """A `user` chat message."""
    from wit_world.imports.gateway import ChatMessage

    return ChatMessage(role="user", content=content)


# --- Forecasts -------------------------------------------------------------


def forecast(event, probability, reasoning=None):
    """The forecast record for `event`: probability clamped to [0, 1] (NaN
    becomes 0.5), with an optional short explanation."""
    from wit_world.imports.types import Forecast

    return Forecast(event_id=event.id, probability=clamp(probability), reasoning=reasoning)


# --- Logging ---------------------------------------------------------------


def _write(level_name, message):
    try:
        from wit_world.imports import log
    except ImportError:  # plain CPython, outside a component
        print("[{}] {}".format(level_name.lower(), message), file=sys.stderr)
        return
    log.write(getattr(log.Level, level_name), message)


def debug(message):
    """Log a debug line."""
    _write("DEBUG", message)


def info(message):
    """Log an informational line."""
    _write("INFO", message)


def warn(message):
    """Log a warning."""
    _write("WARN", message)


def error(message):
    """Log an error."""
    _write("ERROR", message)
