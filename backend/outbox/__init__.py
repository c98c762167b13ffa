"""Sending signed transactions exactly once, for every key that sends: the `Sender` base
(`sender.py`, with the one worker loop: sign, broadcast, settle at depth through reorgs, replace
what stays unmined), the fee rules (`fees.py`), the versions of a row's transaction
(`versions.py`), the nonce lock (`nonce.py`) and the process ownership lock named for each sender
(`owner.py`); the signed transactions themselves are the `outbox_transaction` table
(`backend/db/models.py`)."""
