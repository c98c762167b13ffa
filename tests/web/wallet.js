// The page side of the page tests' wallet (tests/web/wallet.py): an EIP-1193 provider announced
// through EIP-6963, injected into every frame by `context.add_init_script` before the page's own
// scripts run. Every request goes to Python through the context's binding (`config.binding`),
// which answers `{result}` or `{error: {code, message, data}}`, plus the events the request caused
// (`events: [[name, payload], ...]`, emitted here before the request settles and passed on to the
// other tabs of the same origin). A decoy wallet (`config.binding` null) refuses every request
// with 4001, as a second extension whose popup the user closes.
//
// The file is one arrow function; wallet.py calls it with its config:
//   {global, binding, name, rdns, icon, windowEthereum: "ifUnset" | "always" | "never"}
(config) => {
  if (window[config.global]) {
    return;
  }

  class ProviderRpcError extends Error {
    constructor(code, message, data) {
      super(message);
      this.name = "ProviderRpcError";
      this.code = code;
      if (data !== undefined && data !== null) {
        this.data = data;
      }
    }
  }

  const listeners = new Map();
  const emit = (event, payload) => {
    for (const listener of [...(listeners.get(event) || [])]) {
      try {
        listener(payload);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  };

  let channel = null;
  try {
    channel = new BroadcastChannel(`test-wallet:${config.rdns}`);
    channel.onmessage = (message) => emit(message.data[0], message.data[1]);
  } catch {
    channel = null; // an opaque origin (about:blank, data:) has no channel
  }

  async function send(args) {
    if (!args || typeof args !== "object" || typeof args.method !== "string") {
      throw new ProviderRpcError(-32600, "Invalid request: expected {method, params}.");
    }
    if (!config.binding) {
      throw new ProviderRpcError(4001, "User rejected the request.");
    }
    const reply = await window[config.binding]({
      method: args.method,
      params: args.params === undefined ? [] : args.params,
    });
    for (const [event, payload] of reply.events || []) {
      emit(event, payload);
      if (channel) {
        channel.postMessage([event, payload]);
      }
    }
    if (reply.error) {
      throw new ProviderRpcError(reply.error.code, reply.error.message, reply.error.data);
    }
    return reply.result;
  }

  const provider = {
    isTestWallet: true,
    request: (args) => send(args),
    on(event, listener) {
      if (!listeners.has(event)) {
        listeners.set(event, []);
      }
      listeners.get(event).push(listener);
      return provider;
    },
    removeListener(event, listener) {
      const list = listeners.get(event) || [];
      const at = list.indexOf(listener);
      if (at >= 0) {
        list.splice(at, 1);
      }
      return provider;
    },
    once(event, listener) {
      const wrapped = (payload) => {
        provider.removeListener(event, wrapped);
        listener(payload);
      };
      return provider.on(event, wrapped);
    },
    listenerCount(event) {
      return (listeners.get(event) || []).length;
    },
  };
  provider.addListener = provider.on;
  provider.off = provider.removeListener;

  const uuid =
    typeof crypto.randomUUID === "function"
      ? crypto.randomUUID()
      : "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
          (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16),
        );
  const info = Object.freeze({ uuid, name: config.name, icon: config.icon, rdns: config.rdns });
  const detail = Object.freeze({ info, provider });
  const announce = () =>
    window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail }));

  Object.defineProperty(window, config.global, {
    value: Object.freeze({ emit, provider, info }),
    enumerable: false,
  });
  if (
    config.windowEthereum === "always" ||
    (config.windowEthereum === "ifUnset" && window.ethereum === undefined)
  ) {
    window.ethereum = provider;
  }
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
};
