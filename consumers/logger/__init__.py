"""Terminal logger: the events topic as `[time] LEVEL [agent] message` lines (`agentwatch logs`)."""
