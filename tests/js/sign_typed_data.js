// Signs EIP-712 typed data exactly as the API returned it, with two real wallet implementations
// pinned in hardhat_local/: MetaMask's @metamask/eth-sig-util (what eth_signTypedData_v4 runs)
// and ethers v6 Wallet.signTypedData. Nothing in the JSON is adjusted, except that ethers takes
// the domain separately and wants `types` without EIP712Domain.
//
// stdin:  {"typed_data": {...}, "private_key": "0x..."}
// stdout: {"metamask": "0x...", "ethers": "0x...", "ethers_address": "0x..."}
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const hardhatRequire = createRequire(
  path.join(__dirname, "..", "..", "hardhat_local", "package.json"),
);
const sigUtil = hardhatRequire("@metamask/eth-sig-util");
const { ethers } = hardhatRequire("ethers");

async function main() {
  const input = JSON.parse(fs.readFileSync(0, "utf8"));
  const typedData = input.typed_data;
  const key = input.private_key;

  const metamask = sigUtil.signTypedData({
    privateKey: Buffer.from(key.replace(/^0x/, ""), "hex"),
    data: typedData,
    version: sigUtil.SignTypedDataVersion.V4,
  });

  const wallet = new ethers.Wallet(key);
  const { EIP712Domain, ...types } = typedData.types; // eslint-disable-line no-unused-vars
  const viaEthers = await wallet.signTypedData(typedData.domain, types, typedData.message);

  process.stdout.write(
    JSON.stringify({ metamask, ethers: viaEthers, ethers_address: wallet.address }),
  );
}

main().catch((err) => {
  process.stderr.write(String((err && err.stack) || err) + "\n");
  process.exit(1);
});
