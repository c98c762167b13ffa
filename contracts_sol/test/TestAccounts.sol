// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";

/// @notice Test-only: a contract account its owner drives through `execute`, so contracts can be
/// clients and providers of an escrow.
contract TestAccount {
    address public immutable owner;

    error CallFailed(bytes reason);

    constructor() payable {
        owner = msg.sender;
    }

    function execute(address target, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        require(msg.sender == owner, "owner");
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable virtual {}
}

/// @notice Test-only: an ERC-1271 wallet that can be told to accept, reject or revert.
contract MockERC1271Wallet is TestAccount {
    enum Mode {
        Accept,
        Reject,
        Revert
    }

    Mode public mode;

    function setMode(Mode m) external {
        mode = m;
    }

    function isValidSignature(bytes32, bytes calldata) external view returns (bytes4) {
        if (mode == Mode.Accept) return IERC1271.isValidSignature.selector;
        if (mode == Mode.Reject) return 0xffffffff;
        revert("wallet says no");
    }
}

interface IWithdraw {
    function withdraw(address token) external;
}

/// @notice Test-only: tries to re-enter `withdraw` from its receive hook.
contract ReentrantWithdrawer is TestAccount {
    address public escrow;
    uint256 public reentries;

    function setEscrow(address e) external {
        escrow = e;
    }

    receive() external payable override {
        if (reentries == 0 && escrow != address(0)) {
            reentries = 1;
            IWithdraw(escrow).withdraw(address(0));
        }
    }
}

/// @notice Test-only: a provider whose receive always reverts.
contract RevertingReceiver is TestAccount {
    receive() external payable override {
        revert("no ETH here");
    }
}

/// @notice Test-only: a multi-owner ERC-1271 wallet in the shape of a Safe: a signature is the
/// owners' 65-byte ECDSA signatures of the digest concatenated in ascending owner order, and the
/// wallet accepts it when `threshold` distinct owners signed (a 2-of-2 signs 130 bytes).
contract MultiOwnerWallet is TestAccount {
    address[] public owners;
    uint256 public immutable threshold;
    mapping(address => bool) public isOwner;

    constructor(address[] memory owners_, uint256 threshold_) payable {
        require(threshold_ > 0 && threshold_ <= owners_.length, "threshold");
        for (uint256 i = 0; i < owners_.length; i++) {
            isOwner[owners_[i]] = true;
            owners.push(owners_[i]);
        }
        threshold = threshold_;
    }

    function isValidSignature(bytes32 digest, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != threshold * 65) return 0xffffffff;
        address last = address(0);
        for (uint256 i = 0; i < threshold; i++) {
            bytes calldata part = signature[i * 65:(i + 1) * 65];
            bytes32 r = bytes32(part[0:32]);
            bytes32 s = bytes32(part[32:64]);
            uint8 v = uint8(part[64]);
            address signer = ecrecover(digest, v, r, s);
            if (signer <= last || !isOwner[signer]) return 0xffffffff;
            last = signer;
        }
        return IERC1271.isValidSignature.selector;
    }
}
