"""`backend.chain.transactions.calldata` encodes a contract call with eth-abi directly and gives
the very bytes web3.py's own encoder gives (a signed transaction's bytes depend on them: a row
signed again with the same nonce and fees must give the stored bytes)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from web3 import Web3

from backend.chain.artifacts import load_artifact
from backend.chain.transactions import calldata

CONTRACT = Web3().eth.contract(
    address=Web3.to_checksum_address("0x" + "11" * 20), abi=load_artifact("QualityEscrow").abi
)
ADDRESS = st.binary(min_size=20, max_size=20).map(lambda b: Web3.to_checksum_address(b))
UINT16 = st.integers(0, 2**16 - 1)
UINT32 = st.integers(0, 2**32 - 1)
PARAMS = st.tuples(
    ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, st.binary(min_size=32, max_size=32),
    st.lists(st.integers(0, 2**256 - 1), min_size=1, max_size=64),
    st.tuples(st.lists(UINT16, min_size=5, max_size=5), UINT16, UINT16, UINT16, UINT16,
              UINT32, UINT32, UINT32, st.integers(0, 2**64 - 1)),
)


@settings(max_examples=40, deadline=None)
@given(
    escrow_id=st.integers(0, 2**256 - 1), params=PARAMS, milestone=st.integers(0, 2**256 - 1),
    rating=st.integers(0, 255), comment=st.binary(min_size=32, max_size=32),
    deadline=st.integers(0, 2**256 - 1), signature=st.binary(max_size=200),
)
def test_calldata_of_confirmWithSig_is_the_bytes_web3_encodes(
    escrow_id: int, params: tuple[object, ...], milestone: int, rating: int, comment: bytes,
    deadline: int, signature: bytes,
) -> None:
    fn = CONTRACT.functions.confirmWithSig(
        escrow_id, params, milestone, rating, comment, deadline, signature
    )
    assert "0x" + calldata(fn).hex() == fn._encode_transaction_data()


def test_calldata_of_a_call_eth_abi_cannot_take_as_it_is_falls_back_to_web3() -> None:
    # a lower-case address and a hex string for bytes32: web3 normalizes both, eth-abi does not
    params = ("0x" + "22" * 20,) * 5 + ("0x" + "33" * 32, [1], ([0] * 5, 1, 1, 1, 1, 1, 1, 1, 1))
    fn = CONTRACT.functions.finalizeBreach(7, params, 3)
    assert "0x" + calldata(fn).hex() == fn._encode_transaction_data()
