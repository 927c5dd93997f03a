import { describe, expect, it } from "vitest";
import {
  RECEPTOR_PROTOCOL_VERSION,
  goDuration,
  goJson,
  meshStatusReply,
  pingReply,
  unitStatusRecord,
  workListReply,
} from "../../meshctl/control/records.js";
import type { MeshStatus, NodeStatus, UnitRecord } from "../../shared/unit.js";
import { node as fixtureNode, wt } from "./fixtures/node-status.js";

const unit = (overrides: Partial<UnitRecord> = {}): UnitRecord => ({
  id: "AbCd1234",
  mesh: "m",
  worktype: "ansible-runner",
  targetNode: "edge-1",
  node: "edge-1",
  tags: [],
  priority: 0,
  params: { params: "--worker-info" },
  state: "Running",
  stateNumber: 1,
  detail: "running on edge-1",
  payloadSize: 10,
  stdoutSize: 42,
  exitCode: null,
  createdAt: "2026-01-01T00:00:00.000Z",
  startedAt: "2026-01-01T00:00:01.000Z",
  finishedAt: null,
  expiresAt: null,
  signed: false,
  origin: "bridge",
  lostAfterMs: null,
  nodeUnreachableSince: null,
  lateExit: null,
  outputCut: null,
  ...overrides,
});

/** The shared fixture, as a bridge sees an ansible-runner node some seconds after it connected. */
const node = (nodeId: string, overrides: Partial<NodeStatus> = {}): NodeStatus =>
  fixtureNode(nodeId, [wt("ansible-runner", { verifySignature: true })], {
    capacity: 2,
    versions: { agent: "0.1.0", node: "v20", ansibleRunner: "2.3.1", podman: null, podmanUsable: false },
    connectedAt: "2026-01-01T00:00:00.000Z",
    lastSeen: "2026-01-01T00:00:05.000Z",
    ...overrides,
  });

const bridge = { nodeId: "bridge", cpuCount: 2, memoryMiB: 3900, now: new Date("2026-01-01T00:00:10.000Z") };

describe("goDuration", () => {
  it.each([
    [0, "0s"],
    [850, "850ns"],
    [1_500, "1.5µs"],
    [1_234_567, "1.234567ms"],
    [2_250_000, "2.25ms"],
    [1_000_000_000, "1s"],
    [90_500_000_000, "1m30.5s"],
    [7_200_000_000_000, "2h0m0s"],
    [-2_000, "-2µs"],
  ])("%d ns is %s, as Go prints it", (ns, text) => {
    expect(goDuration(ns)).toBe(text);
  });
});

describe("goJson", () => {
  it("escapes what Go's encoder escapes", () => {
    expect(goJson({ Detail: "a<b>&c\u2028" })).toBe('{"Detail":"a\\u003cb\\u003e\\u0026c\\u2028"}');
  });
});

describe("unit status record", () => {
  it("is receptor's record of a remote unit, byte for byte", () => {
    expect(goJson(unitStatusRecord(unit()))).toBe(
      '{"Detail":"running on edge-1","ExtraData":{"RemoteNode":"edge-1","RemoteWorkType":"ansible-runner","RemoteParams":{"params":"--worker-info"},' +
        '"RemoteUnitID":"AbCd1234","RemoteStarted":true,"LocalCancelled":false,"LocalReleased":false,"TLSClient":"","Expiration":"0001-01-01T00:00:00Z","SignWork":false},' +
        '"State":1,"StateName":"Running","StdoutSize":42,"WorkType":"remote"}',
    );
  });

  it("leaves secret_* params out, as receptor's Status() does", () => {
    const record = unitStatusRecord(
      unit({ params: { params: "x", secret_kube_pod: "pod", SECRET_kube_config: "cfg" } }),
    );
    expect(record.ExtraData).toMatchObject({ RemoteParams: { params: "x" } });
  });

  it("names the requested node until one takes the unit, and carries the ttl as Expiration", () => {
    const record = unitStatusRecord(
      unit({ node: null, state: "Pending", stateNumber: 0, expiresAt: "2026-01-01T01:00:00.000Z", signed: true }),
    );
    expect(record.ExtraData).toMatchObject({
      RemoteNode: "edge-1",
      RemoteUnitID: "",
      RemoteStarted: false,
      Expiration: "2026-01-01T01:00:00.000Z",
      SignWork: true,
    });
    expect(record).toMatchObject({ State: 0, StateName: "Pending" });
  });

  it.each([
    ["Succeeded", 2, false, false],
    ["Failed", 3, false, false],
    ["Canceled", 4, true, false],
    ["Released", 5, true, true],
  ] as const)("%s is State %d", (state, number, cancelled, released) => {
    const record = unitStatusRecord(unit({ state, stateNumber: number }));
    expect(record).toMatchObject({ State: number, StateName: state });
    expect(record.ExtraData).toMatchObject({ LocalCancelled: cancelled, LocalReleased: released });
  });

  it("lists units by id", () => {
    const list = workListReply([unit({ id: "zz000000" }), unit({ id: "Aa000000" })]);
    expect(Object.keys(list)).toEqual(["Aa000000", "zz000000"]);
    expect(list.zz000000).toEqual(unitStatusRecord(unit({ id: "zz000000" })));
  });
});

describe("status", () => {
  const status: MeshStatus = {
    mesh: "m",
    nodes: [
      node("edge-2", { tags: { site: "b" } }),
      node("edge-1"),
      node("gone", { connected: false }),
      node("lost", { lost: true }),
    ],
    units: { pending: 0, running: 0 },
  };

  it("shows the bridge linked to each reachable node, with work types as WorkCommands", () => {
    const reply = meshStatusReply(status, bridge, null);
    expect(Object.keys(reply)).toEqual([
      "Advertisements",
      "Connections",
      "KnownConnectionCosts",
      "NodeID",
      "RoutingTable",
      "SystemCPUCount",
      "SystemMemoryMiB",
      "Version",
    ]);
    expect(reply).toMatchObject({
      NodeID: "bridge",
      Version: "1.4.9",
      SystemCPUCount: 2,
      SystemMemoryMiB: 3900,
      Connections: [
        { NodeID: "edge-2", Cost: 1 },
        { NodeID: "edge-1", Cost: 1 },
      ],
      RoutingTable: { "edge-1": "edge-1", "edge-2": "edge-2" },
      KnownConnectionCosts: { bridge: { "edge-1": 1, "edge-2": 1 }, "edge-1": { bridge: 1 }, "edge-2": { bridge: 1 } },
    });
    expect(reply.Advertisements).toEqual([
      {
        NodeID: "bridge",
        Service: "control",
        Time: "2026-01-01T00:00:10.000Z",
        ConnType: 1,
        Tags: null,
        WorkCommands: null,
      },
      {
        NodeID: "edge-1",
        Service: "control",
        Time: "2026-01-01T00:00:05.000Z",
        ConnType: 1,
        Tags: null,
        WorkCommands: [{ WorkType: "ansible-runner", Secure: true }],
      },
      {
        NodeID: "edge-2",
        Service: "control",
        Time: "2026-01-01T00:00:05.000Z",
        ConnType: 1,
        Tags: { site: "b" },
        WorkCommands: [{ WorkType: "ansible-runner", Secure: true }],
      },
    ]);
  });

  it("answers only the requested fields, skipping unknown ones", () => {
    // receptorctl warns unless this equals its own version: the receptor release the bridge follows.
    expect(meshStatusReply(status, bridge, ["Version"])).toEqual({ Version: RECEPTOR_PROTOCOL_VERSION });
    expect(RECEPTOR_PROTOCOL_VERSION).toBe("1.4.9");
    expect(meshStatusReply(status, bridge, ["NodeID", "Nope"])).toEqual({ NodeID: "bridge" });
  });
});

describe("ping", () => {
  it("answers as receptor's ping does", () => {
    expect(goJson(pingReply({ ok: true, from: "edge-1", ns: 1_500_000 }))).toBe(
      '{"From":"edge-1","Success":true,"Time":1500000,"TimeStr":"1.5ms"}',
    );
    expect(goJson(pingReply({ ok: false, error: "node x is not connected to mesh m" }))).toBe(
      '{"Error":"node x is not connected to mesh m","Success":false}',
    );
  });
});
