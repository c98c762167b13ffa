// Hardhat 2 configuration for the local Ethereum network of Quality Escrow.
//
// Only `hardhat node` is used here: contracts are compiled by py-solc-x
// (backend/chain/compiler.py), never by `hardhat compile`, and deployed over JSON-RPC.
//
//   npx hardhat node --hostname 127.0.0.1 --port 8545
//
// No network access is needed: no forking, no compiler download (that happens only in
// `hardhat compile`). The telemetry consent prompt is shown only when stdout is a TTY;
// backend/chain/node.py also sets HARDHAT_DISABLE_TELEMETRY_PROMPT=true. Anonymous
// telemetry is sent only after a "yes" to that prompt.

/** Hardhat's well-known development mnemonic: NEVER use these accounts outside dev chains. */
const DEV_MNEMONIC = "test test test test test test test test test test test junk";

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  // A version string only, so Hardhat's config validation is happy; never compiled here.
  solidity: "0.8.28",
  defaultNetwork: "hardhat",
  networks: {
    hardhat: {
      chainId: 31337,
      // The contracts target evmVersion "cancun"; the chain runs Prague, as does the
      // in-process eth-tester (py-evm PragueVM) chain used by the fast tests.
      hardfork: "prague",
      accounts: {
        mnemonic: DEV_MNEMONIC,
        path: "m/44'/60'/0'/0",
        count: 20,
        accountsBalance: "10000000000000000000000", // 10 000 ETH each
      },
      mining: {
        auto: true,
        interval: 0,
      },
      loggingEnabled: true,
    },
  },
  paths: {
    // Nothing is compiled by Hardhat; keep its folders inside hardhat_local/.
    sources: "./no-sources",
    artifacts: "./artifacts",
    cache: "./cache",
  },
};
