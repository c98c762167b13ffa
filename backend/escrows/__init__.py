"""What the service says about escrows and prepares for wallets: prepare, actions,
listing, detail, statements, ledger export, credits, acceptance acts."""
