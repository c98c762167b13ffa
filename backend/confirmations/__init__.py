"""The confirmation relay: checks a client's signed confirmation (`verify`), keeps it in the
outbox (`outbox`, `submit`) and sends it on-chain exactly once (`relayer`)."""
