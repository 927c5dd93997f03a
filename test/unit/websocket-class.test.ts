import { Agent, WebSocket as UndiciWebSocket } from "undici";
import { describe, expect, it } from "vitest";
import { webSocketClass } from "../../agent/socket.js";

describe("the agent's WebSocket", () => {
  class BuiltIn {}

  it("is Node's own where Node has one", async () => {
    expect(await webSocketClass(undefined, BuiltIn)).toBe(BuiltIn);
  });

  it("is the undici package's on a Node without one (Node 20)", async () => {
    expect(await webSocketClass(undefined, null)).toBe(UndiciWebSocket);
  });

  it("is the undici package's with --ca-file's dispatcher, an Agent of that package", async () => {
    const dispatcher = new Agent();
    try {
      expect(await webSocketClass(dispatcher, BuiltIn)).toBe(UndiciWebSocket);
    } finally {
      await dispatcher.close();
    }
  });
});
