import { describe, expect, it } from "vitest";
import { WorkCommand } from "../../agent/config.js";
import { helloMessage } from "../../agent/hello.js";
import { AgentControlMessage, PROTOCOL_VERSION } from "../../shared/protocol.js";

const versions = { agent: "0.1.0", node: "v24", ansibleRunner: null, podman: null, podmanUsable: false };
const node = (workCommands: WorkCommand[]) => ({
  nodeId: "n1",
  workCommands,
  capacity: 2,
  tags: { zone: "a" },
  versions,
});
const work = (w: Partial<WorkCommand> & { worktype: string; command: string }) => WorkCommand.parse(w);

describe("helloMessage", () => {
  it.each<[string, WorkCommand, object]>([
    ["a plain command", work({ worktype: "sh", command: "sh" }), {}],
    ["inline start", work({ worktype: "sh", command: "sh", inlinestart: true }), { inlineStart: true }],
    [
      "ansible-runner worker streams its payload",
      work({ worktype: "ar", command: "ansible-runner", params: "worker" }),
      { streamingPayload: true },
    ],
    [
      "a signed work type never streams",
      work({ worktype: "ar", command: "ansible-runner", params: "worker", verifysignature: true }),
      {},
    ],
  ])("advertises %s", (_what, w, flags) => {
    const hello = helloMessage(node([w]), [], null);
    expect(hello.workTypes).toEqual([
      { worktype: w.worktype, verifySignature: w.verifysignature, allowRuntimeParams: w.allowruntimeparams, ...flags },
    ]);
  });

  it("lists the units held, carries the disk only once sampled, and decodes as a control message", () => {
    const without = helloMessage(node([]), ["u1"], null);
    expect(without).toMatchObject({ type: "hello", protocol: PROTOCOL_VERSION, nodeId: "n1", units: ["u1"] });
    expect("disk" in without).toBe(false);
    const disk = { freeBytes: 10, minFreeBytes: 5 };
    const withDisk = helloMessage(node([]), [], disk);
    expect(withDisk.disk).toEqual(disk);
    expect(AgentControlMessage.safeParse(withDisk).success).toBe(true);
  });
});
