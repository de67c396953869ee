"""Tests of sooth_sdk in plain CPython, without generated bindings.

Run with `python3 -m unittest discover -s sdk/python`.
"""

import math
import sys
import types
import unittest
from dataclasses import dataclass
from typing import Optional

import sooth_sdk
from sooth_sdk import backoff, clamp, is_retryable, market_prob, parse_probability as parse


# Stand-ins for the generated bindings, named as componentize-py names them.
@dataclass(frozen=True)
class Err(Exception):
    value: object


@dataclass
class GatewayError_BudgetExceeded:
    value: str


@dataclass
class GatewayError_RateLimited:
    value: int


@dataclass
class GatewayError_Unavailable:
    value: str


@dataclass
class GatewayError_NotFound:
    value: str


@dataclass
class GatewayError_BadRequest:
    value: str


@dataclass
class GatewayError_Timeout:
    pass


@dataclass
class Event:
    id: str = "e"
    kind: str = "binary"
    title: str = ""
    description: str = ""
    created_at: int = 0
    cutoff: int = 0
    metadata: str = "{}"


@dataclass
class Forecast:
    event_id: str
    probability: float
    reasoning: Optional[str]


class ProbabilityTest(unittest.TestCase):
    def test_plain_numbers_and_percentages(self):
        self.assertEqual(parse("0.73"), 0.73)
        self.assertEqual(parse(".2"), 0.2)
        self.assertEqual(parse("I'd say 65%."), 0.65)
        self.assertEqual(parse("about 40 % likely"), 0.4)
        self.assertEqual(parse("1"), 1.0)

    def test_answer_after_the_word_probability_wins(self):
        text = "In 2 of 3 similar cases (0.66) it happened. Final probability: 0.8"
        self.assertEqual(parse(text), 0.8)
        self.assertEqual(parse("Probability 0.3, though 0.9 once"), 0.9)
        self.assertEqual(parse("0.4 but the PROBABILITY is unclear"), 0.4)

    def test_numbers_that_are_not_probabilities_are_ignored(self):
        self.assertIsNone(parse("In 2024 there were 12 cases"))
        self.assertIsNone(parse("no idea"))
        self.assertIsNone(parse("150%"))
        self.assertEqual(parse("gpt4.5 thinks 0.3"), 0.3)
        self.assertIsNone(parse("version 1.2.3"))
        self.assertEqual(parse("0.5.\u00a0"), 0.5)
        self.assertEqual(parse("45\u00a0%"), 0.45)
        self.assertEqual(parse("\u00e9t\u00e9 0.6"), 0.6)

    def test_clamp_handles_nan_and_range(self):
        self.assertEqual(clamp(math.nan), 0.5)
        self.assertEqual(clamp(-3.0), 0.0)
        self.assertEqual(clamp(7.0), 1.0)
        self.assertEqual(clamp(0.25), 0.25)
        self.assertEqual(clamp(math.inf), 1.0)


class MetadataTest(unittest.TestCase):
    def test_reads_market_prob(self):
        self.assertEqual(market_prob(Event(metadata='{"market_prob": 0.42}')), 0.42)
        self.assertIsNone(market_prob(Event(metadata='{"market_prob": 1.7}')))
        self.assertIsNone(market_prob(Event(metadata='{"market_prob": "0.4"}')))
        self.assertIsNone(market_prob(Event(metadata="not json")))
        self.assertIsNone(market_prob(Event(metadata="[]")))
        self.assertIsNone(market_prob(Event(metadata='{"market_prob": true}')))
        self.assertEqual(market_prob(Event(metadata='{"market_prob": 1}')), 1.0)

    def test_metadata_is_an_object_or_empty(self):
        self.assertEqual(sooth_sdk.metadata(Event(metadata='{"source": "x"}')), {"source": "x"})
        self.assertEqual(sooth_sdk.metadata(Event(metadata="[1]")), {})
        self.assertEqual(sooth_sdk.metadata(Event(metadata='{"a": NaN}')), {})
        self.assertIsNone(sooth_sdk.number(Event(metadata='{"n": 1e999}'), "n"))


class GatewayTest(unittest.TestCase):
    def test_backoff_doubles_honours_retry_after_and_is_capped(self):
        unavailable = GatewayError_Unavailable("cold")
        self.assertEqual(backoff(1, unavailable), 0.25)
        self.assertEqual(backoff(3, unavailable), 1.0)
        self.assertEqual(backoff(30, unavailable), 8.0)
        self.assertEqual(backoff(1, GatewayError_RateLimited(3000)), 3.0)
        self.assertEqual(backoff(1, Err(GatewayError_RateLimited(3000))), 3.0)

    def test_which_errors_are_retryable(self):
        for variant in (GatewayError_RateLimited(5), GatewayError_Unavailable("x"), GatewayError_Timeout()):
            self.assertTrue(is_retryable(variant))
            self.assertTrue(is_retryable(Err(variant)))
        for variant in (
            GatewayError_BudgetExceeded("x"),
            GatewayError_NotFound("x"),
            GatewayError_BadRequest("x"),
        ):
            self.assertFalse(is_retryable(Err(variant)))
        self.assertFalse(is_retryable(Err("plain string")))
        self.assertFalse(is_retryable(ValueError("other")))

    def test_describe(self):
        self.assertEqual(sooth_sdk.describe(Err(GatewayError_RateLimited(30))), "rate limited, retry after 30 ms")
        self.assertEqual(sooth_sdk.describe(Err(GatewayError_Timeout())), "timed out")
        self.assertEqual(sooth_sdk.describe(GatewayError_NotFound("model")), "not found: model")

    def test_retry_stops_on_errors_that_cannot_be_fixed_by_waiting(self):
        waits = []

        calls = []

        def not_found():
            calls.append(1)
            raise Err(GatewayError_NotFound("model"))

        with self.assertRaises(Err):
            sooth_sdk.retry(not_found, initial_backoff=0.0, sleep=waits.append)
        self.assertEqual(len(calls), 1)

        calls = []

        def flaky():
            calls.append(1)
            if len(calls) < 3:
                raise Err(GatewayError_Timeout())
            return len(calls)

        self.assertEqual(sooth_sdk.retry(flaky, initial_backoff=0.0, sleep=waits.append), 3)

        calls = []

        def down():
            calls.append(1)
            raise Err(GatewayError_Unavailable("down"))

        with self.assertRaises(Err):
            sooth_sdk.retry(down, initial_backoff=0.0, sleep=waits.append)
        self.assertEqual(len(calls), 4)

        def broken():
            raise KeyError("bug")

        with self.assertRaises(KeyError):
            sooth_sdk.retry(broken, sleep=waits.append)

    def test_retry_waits_as_backoff_says(self):
        waits = []
        errors = [GatewayError_RateLimited(3000), GatewayError_Unavailable("cold")]

        def operation():
            if errors:
                raise Err(errors.pop(0))
            return "ok"

        self.assertEqual(sooth_sdk.retry(operation, sleep=waits.append), "ok")
        self.assertEqual(waits, [3.0, 0.5])


class ForecastTest(unittest.TestCase):
    def setUp(self):
        # A fake `wit_world.imports.types` for the lazy import in `forecast`.
        self.saved = {name: sys.modules.get(name) for name in ("wit_world", "wit_world.imports", "wit_world.imports.types")}
        world = types.ModuleType("wit_world")
        imports = types.ModuleType("wit_world.imports")
        records = types.ModuleType("wit_world.imports.types")
        records.Forecast = Forecast
        world.imports = imports
        imports.types = records
        sys.modules.update({"wit_world": world, "wit_world.imports": imports, "wit_world.imports.types": records})

    def tearDown(self):
        for name, module in self.saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module

    def test_forecast_clamps_and_echoes_the_event(self):
        self.assertEqual(sooth_sdk.forecast(Event(id="x"), 1.5), Forecast("x", 1.0, None))
        self.assertEqual(sooth_sdk.forecast(Event(id="y"), math.nan, "why"), Forecast("y", 0.5, "why"))


if __name__ == "__main__":
    unittest.main()
