"""What the service says about escrows and prepares for wallets: prepare, actions,
listing, detail, statements, ledger export (both through the one CSV writer, `csv_writer`),
credits, acceptance acts."""
