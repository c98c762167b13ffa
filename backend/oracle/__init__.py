"""The KPI oracle's submission side: the outbox of breach reports and the worker sending them."""
