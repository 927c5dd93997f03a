/** The control service's commands against a fake broker: what each asks of the HTTP API and answers. */
import { PassThrough, Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../agent/log.js";
import { MeshApiError, type SubmitOptions } from "../../meshctl/client.js";
import { type Broker, type CommandContext, type Session, runCommand } from "../../meshctl/control/commands.js";
import { parseCommand } from "../../meshctl/control/protocol.js";
import type { MeshStatus, UnitRecord, UnitSummary } from "../../shared/unit.js";

const record = (id: string, overrides: Partial<UnitRecord> = {}): UnitRecord => ({
  id,
  mesh: "m",
  worktype: "cat",
  targetNode: null,
  node: "edge-1",
  params: {},
  state: "Succeeded",
  stateNumber: 2,
  detail: "exit status 0",
  payloadSize: 0,
  stdoutSize: 0,
  exitCode: 0,
  createdAt: "2026-01-01T00:00:00.000Z",
  startedAt: null,
  finishedAt: null,
  expiresAt: null,
  signed: false,
  ...overrides,
});

const summary = (unit: UnitRecord): UnitSummary => ({ ...unit, updatedAt: unit.createdAt });
const unknownUnit = () => new MeshApiError("unknown_unit", "no such unit", 404);

class FakeBroker implements Broker {
  submitted: { options: SubmitOptions; payload: string }[] = [];
  units = new Map<string, UnitRecord | MeshApiError>();
  cancelError: MeshApiError | null = null;
  nodes: MeshStatus["nodes"] = [];

  status = async (): Promise<MeshStatus> => ({ mesh: "m", nodes: this.nodes, units: { pending: 0, running: 0 } });
  list = async (): Promise<UnitSummary[]> => [...this.units.entries()].map(([id, u]) => summary(u instanceof MeshApiError ? record(id) : u));
  unit = async (id: string): Promise<UnitRecord> => {
    const unit = this.units.get(id);
    if (!unit) throw unknownUnit();
    if (unit instanceof MeshApiError) throw unit;
    return unit;
  };
  cancel = async (id: string): Promise<UnitRecord> => {
    if (this.cancelError) throw this.cancelError;
    return this.unit(id);
  };
  release = async (id: string): Promise<UnitRecord> => record(id, { state: "Released", stateNumber: 5 });
  submit = async (options: SubmitOptions): Promise<UnitRecord> => {
    let payload = "";
    for await (const chunk of options.payload as Readable) payload += chunk;
    this.submitted.push({ options, payload });
    return record(options.unitId!, { state: "Pending", stateNumber: 0, targetNode: options.node ?? null });
  };
  results: Broker["results"] = async () => 0;
}

async function run(line: string, broker: FakeBroker, payload: Readable = Readable.from([])) {
  const parsed = parseCommand(line);
  if (!parsed.ok) throw new Error(parsed.error);
  let written = "";
  const session: Session = {
    write: async (text) => {
      written += text;
    },
    payload: () => payload,
    out: new PassThrough(),
    signal: new AbortController().signal,
  };
  const ctx: CommandContext = {
    broker,
    mesh: "m",
    bridge: () => ({ nodeId: "bridge", version: "0", cpuCount: 1, memoryMiB: 1, now: new Date(0) }),
    signingKey: null,
    log: createLogger("error"),
  };
  const after = await runCommand(parsed.command, session, ctx);
  return { after, written };
}

describe("work submit", () => {
  it("answers with the id it submits under, after the whole payload, and ends the connection", async () => {
    const broker = new FakeBroker();
    const { after, written } = await run(
      '{"command":"work","subcommand":"submit","node":"edge-1","worktype":"cat","params":"-x","ttl":"5m"}',
      broker,
      Readable.from(["hel", "lo"]),
    );
    const [created, result] = written.split("\n");
    const id = /^Work unit created with ID ([0-9a-zA-Z]{8})\. Send stdin data and EOF\.$/.exec(created!)![1];
    expect(result).toBe(`{"result":"Job Submitted","unitid":"${id}"}`);
    expect(after).toBe("close");
    expect(broker.submitted).toEqual([
      {
        options: expect.objectContaining({
          worktype: "cat",
          node: "edge-1",
          params: { params: "-x" },
          ttl: "5m",
          unitId: id,
          signature: undefined,
          payloadSize: 5,
        }),
        payload: "hello",
      },
    ]);
  });

  it.each(["localhost", "LOCALHOST", "bridge", ""])("sends work for node %j to any node", async (node) => {
    const broker = new FakeBroker();
    await run(JSON.stringify({ command: "work", subcommand: "submit", node, worktype: "cat" }), broker);
    expect(broker.submitted[0]!.options.node).toBeUndefined();
  });

  it("creates no unit when the payload breaks off", async () => {
    const broker = new FakeBroker();
    async function* cut() {
      yield Buffer.from("half");
      throw new Error("the client disconnected");
    }
    const { after, written } = await run("work submit edge-1 cat", broker, Readable.from(cut()));
    expect(written).toMatch(/^Work unit created with ID [0-9a-zA-Z]{8}\. Send stdin data and EOF\.\n$/);
    expect(after).toBe("close");
    expect(broker.submitted).toEqual([]);
  });

  it("refuses signwork without a signing key, and a bad ttl, before taking a payload", async () => {
    const broker = new FakeBroker();
    expect(await run('{"command":"work","subcommand":"submit","node":"edge-1","worktype":"cat","signwork":"true"}', broker)).toEqual({
      after: "close",
      written: "ERROR: cannot sign work: signing key is empty\n",
    });
    expect((await run('{"command":"work","subcommand":"submit","node":"edge-1","worktype":"cat","ttl":"later"}', broker)).written).toMatch(
      /^ERROR: bad duration "later"/,
    );
    expect(broker.submitted).toEqual([]);
  });

  it("passes the broker's refusal on as the second line", async () => {
    const broker = new FakeBroker();
    broker.submit = async () => {
      throw new MeshApiError("unknown_worktype", "no node of mesh m offers work type cat", 400);
    };
    const { written } = await run("work submit edge-1 cat", broker);
    expect(written.split("\n")[1]).toBe("ERROR: no node of mesh m offers work type cat");
  });
});

describe("unit commands", () => {
  it("lists units without tombstones or units gone since the listing", async () => {
    const broker = new FakeBroker();
    broker.units.set("Aa000001", record("Aa000001"));
    broker.units.set("Aa000002", record("Aa000002", { state: "Released", stateNumber: 5 }));
    broker.units.set("Aa000003", unknownUnit());
    const { written } = await run("work list", broker);
    expect(Object.keys(JSON.parse(written))).toEqual(["Aa000001"]);
  });

  it("says unknown work unit in receptor's words, and keeps the connection", async () => {
    expect(await run("work status Zz000000", new FakeBroker())).toEqual({ after: "next", written: "ERROR: unknown work unit Zz000000\n" });
  });

  it("answers cancelled for a released unit: release implied the cancel", async () => {
    const broker = new FakeBroker();
    broker.cancelError = new MeshApiError("unit_released", "the unit was released", 410);
    expect((await run("work cancel Aa000001", broker)).written).toBe('{"cancelled":"Aa000001"}\n');
    broker.cancelError = new MeshApiError("unreachable", "cannot reach the broker", 0);
    expect((await run("work cancel Aa000001", broker)).written).toBe("ERROR: cannot reach the broker\n");
  });

  it("refuses results of a released unit before any header", async () => {
    const broker = new FakeBroker();
    broker.units.set("Aa000001", record("Aa000001", { state: "Released", stateNumber: 5 }));
    expect(await run("work results Aa000001", broker)).toEqual({ after: "next", written: "ERROR: unit Aa000001 was released; its results are gone\n" });
  });

  it("streams results after the header, then closes", async () => {
    const broker = new FakeBroker();
    broker.units.set("Aa000001", record("Aa000001"));
    const asked: unknown[] = [];
    broker.results = async (id, _out, options) => {
      asked.push({ id, offset: options?.offset, follow: options?.follow });
      return 0;
    };
    expect(await run("work results Aa000001 7", broker)).toEqual({ after: "close", written: "Streaming results for work unit Aa000001\n" });
    expect(asked).toEqual([{ id: "Aa000001", offset: 7, follow: true }]);
  });
});

describe("ping", () => {
  it("reaches itself and connected nodes, and reports the rest", async () => {
    const broker = new FakeBroker();
    broker.nodes = [
      {
        nodeId: "edge-1",
        connected: true,
        lost: false,
        workTypes: [],
        capacity: 1,
        activeUnits: 0,
        tags: {},
        versions: { agent: "0", node: "v20", ansibleRunner: null, podman: null, podmanUsable: false },
        connectedAt: null,
        lastSeen: null,
        disk: null,
        lowDisk: null,
      },
    ];
    for (const target of ["bridge", "edge-1"]) expect(JSON.parse((await run(`ping ${target}`, broker)).written)).toMatchObject({ Success: true, From: target });
    expect(JSON.parse((await run("ping edge-2", broker)).written)).toEqual({ Success: false, Error: "node edge-2 is not connected to mesh m" });
  });
});
