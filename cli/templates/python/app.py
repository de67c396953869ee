"""{{name}}: a sooth forecasting agent.

It forecasts the market's own probability when the event carries one
(`metadata.market_prob`), else 0.5. Replace `predict` with your own model;
`wit_world.imports.gateway` reaches the validator's LLM and web-search
services (see `sooth_sdk.retry`).
"""

import sooth_sdk
import wit_world.exports


class Agent(wit_world.exports.Agent):
    def predict(self, event):
        market = sooth_sdk.market_prob(event)
        if market is None:
            return sooth_sdk.forecast(event, 0.5, "no market price")
        return sooth_sdk.forecast(event, market, "market price")
