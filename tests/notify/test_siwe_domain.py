"""The Sign-In with Ethereum domain: `ESCROW_SIWE_DOMAIN` is required off the development chain
(unset, the domain would be the request's own `Host` header, which the sender chooses); on chain
31337 and the in-process chain the Host header stays accepted. (`escrow serve` refusing to start:
tests/cli/test_start_refusals.py.)"""

from __future__ import annotations

import pytest

from backend.errors import ConfigurationError
from backend.notify.sign_in import check_domain_setting


def test_a_dev_chain_needs_no_siwe_domain() -> None:
    check_domain_setting(None, 31337, dev_chain=True)


def test_any_other_chain_needs_a_siwe_domain() -> None:
    check_domain_setting("escrow.example.com", 1, dev_chain=False)
    for unset in (None, ""):
        with pytest.raises(ConfigurationError) as caught:
            check_domain_setting(unset, 1, dev_chain=False)
        assert caught.value.message.startswith(
            "ESCROW_SIWE_DOMAIN is not set: on chain 1 (not the development chain 31337)"
        )
