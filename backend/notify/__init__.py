"""Notifications: webhook subscriptions proven with Sign-In with Ethereum (EIP-4361), events
derived from the indexed chain, and a dispatcher that POSTs them signed with HMAC-SHA256.

- `siwe`: the EIP-4361 message (build, parse, check, signature recovery, ERC-1271);
- `sign_in`: nonces (table `siwe_nonce`, `models`) and `authenticate`;
- `webhooks`: event types, subscriptions, body signing;
- `egress`: where webhooks may go (public addresses only, checked at subscription and at
  every delivery; `ESCROW_WEBHOOK_ALLOW_HOSTS` for development);
- `events`: `webhook_listener` (an `Indexer` listener) and `scan_review_deadlines`;
- `dispatch`: `dispatch_due` and the worker loop `run_dispatcher`.

Kept free of imports so that `backend.db.models` can be imported from `backend.db.models`.
"""
