"""Chain -> database: the reorg-safe indexer and the pure event fold (ledger)."""
