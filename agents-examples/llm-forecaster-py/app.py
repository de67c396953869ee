"""The LLM forecaster, in Python: asks the gateway's chat service for a
probability and parses it from the answer; on any gateway error or
unparseable answer it falls back on the market price, then on the base rate.

The same agent as `agents-examples/llm-forecaster` (Rust), with the same
prompt, so that both are answered from the gateway's cache alike.
"""

import json

import sooth_sdk
import wit_world.exports
from wit_world.imports import gateway

MODEL = "deepseek-ai/DeepSeek-V3"
BASE_RATE = 0.35


def prompt(event):
    # No timestamps or random data: identical prompts are served from the
    # gateway's cache.
    text = "Question: {}\n".format(event.title)
    if event.description:
        text += "Background: {}\n".format(event.description)
    market = sooth_sdk.market_prob(event)
    if market is not None:
        text += "The market currently says {:.2f}.\n".format(market)
    text += "Answer with the probability that the answer is yes, as a number between 0 and 1."
    return text


class Agent(wit_world.exports.Agent):
    def predict(self, event):
        request = gateway.ChatRequest(
            model=MODEL,
            messages=[
                sooth_sdk.system("You are a careful superforecaster. Reply with one probability."),
                sooth_sdk.user(prompt(event)),
            ],
            temperature=0.0,
            max_tokens=64,
        )
        market = sooth_sdk.market_prob(event)
        fallback = BASE_RATE if market is None else market
        try:
            answer = sooth_sdk.retry(lambda: gateway.chat(request))
        except Exception as error:  # a gateway error, or anything unexpected
            sooth_sdk.warn("chat failed: {}".format(sooth_sdk.describe(error)))
            return sooth_sdk.forecast(event, fallback, "fallback: {}".format(sooth_sdk.describe(error)))
        p = sooth_sdk.parse_probability(answer.content)
        if p is None:
            sooth_sdk.warn("no probability in the model's answer: {}".format(json.dumps(answer.content, ensure_ascii=False)))
            return sooth_sdk.forecast(event, fallback, "fallback: unparseable answer")
        return sooth_sdk.forecast(event, p, "{} said {}".format(answer.model, p))
