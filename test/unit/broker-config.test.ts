import { describe, expect, it } from "vitest";
import { CONFIG_VARS, brokerConfig, misconfiguredBroker, parseBrokerConfig } from "../../shared/broker-config.js";

describe("broker config", () => {
  it("takes every var of wrangler.toml, and the defaults where none is set", () => {
    const vars = Object.fromEntries(Object.values(CONFIG_VARS).map((name, i) => [name, String(i + 1)]));
    const { config, problems } = parseBrokerConfig(vars);
    expect(problems).toEqual([]);
    expect(Object.values(config)).toEqual(Object.values(CONFIG_VARS).map((_, i) => i + 1));
    expect(brokerConfig({}).maxNodes).toBe(1000);
    expect(misconfiguredBroker({})).toBeNull();
  });

  it.each([
    ["abc"],
    [""],
    [" "],
    ["0"],
    ["-5"],
    ["1.5"],
    ["1e400"],
    ["9007199254740993"],
    ["0x10"],
    ["1e3"],
    [" 5"],
    ["5 "],
    ["1.0"],
    ["+5"],
    ["0b101"],
  ])("refuses MAX_NODES=%j with a line naming the var and the value", (value) => {
    const { config, problems } = parseBrokerConfig({ MAX_NODES: value, NODE_LEASE_MS: "2000" });
    expect(problems).toEqual([`MAX_NODES must be a positive integer, got ${JSON.stringify(value)}`]);
    // The well-formed var still applies; the malformed one keeps its default for what keeps running.
    expect(config.nodeLeaseMs).toBe(2000);
    expect(config.maxNodes).toBe(1000);
    expect(misconfiguredBroker({ MAX_NODES: value })).toBe(
      `broker misconfigured: MAX_NODES must be a positive integer, got ${JSON.stringify(value)}`,
    );
  });

  it("names every malformed var in one line", () => {
    expect(misconfiguredBroker({ MAX_NODES: "x", PING_INTERVAL_MS: "0" })).toBe(
      'broker misconfigured: PING_INTERVAL_MS must be a positive integer, got "0"; MAX_NODES must be a positive integer, got "x"',
    );
  });
});
