"""The auditor: verifies the settlement history from the chain alone."""
