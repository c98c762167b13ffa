// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {TestAccount} from "./TestAccounts.sol";

/// @notice Test-only: an ERC-1271 wallet that accepts every signature and, when `burnFor` (the
/// escrow) asks, first burns `burn` gas. Asked by anyone else (an `eth_call` from address 0, as an
/// off-chain check does) it answers at once, so only the real `confirmWithSig` shows the cost.
contract GasBurningWallet is TestAccount {
    /// @notice the caller for whom the wallet burns gas (the escrow contract)
    address public burnFor;
    /// @notice gas burned per `isValidSignature` asked by `burnFor`
    uint256 public burn;

    function setBurn(address burnFor_, uint256 burn_) external {
        burnFor = burnFor_;
        burn = burn_;
    }

    function isValidSignature(bytes32, bytes calldata) external view returns (bytes4) {
        if (msg.sender == burnFor) {
            uint256 start = gasleft();
            uint256 x;
            while (start - gasleft() < burn) {
                x = uint256(keccak256(abi.encode(x)));
            }
        }
        return IERC1271.isValidSignature.selector;
    }
}
