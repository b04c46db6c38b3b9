"""Running executions: the pure decision core (`state`) and the async conductor that drives it."""
