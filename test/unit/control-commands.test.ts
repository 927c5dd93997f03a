/** The control service's commands against a fake broker: what each asks of the HTTP API and answers. */
import { PieceDecoder } from "../../shared/payload-framing.js";
import { generateKeyPairSync } from "node:crypto";
import { PassThrough, Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../shared/node/log.js";
import { MeshApiError, type SubmitOptions } from "../../meshctl/client.js";
import {
  type Broker,
  type CommandContext,
  SIGNED_WAIT_MS,
  type Session,
  runCommand,
} from "../../meshctl/control/commands.js";
import { parseCommand } from "../../meshctl/control/protocol.js";
import type { MeshStatus, UnitRecord } from "../../shared/unit.js";
import { node, wt } from "./fixtures/node-status.js";

const record = (id: string, overrides: Partial<UnitRecord> = {}): UnitRecord => ({
  id,
  mesh: "m",
  worktype: "cat",
  targetNode: null,
  node: "edge-1",
  tags: [],
  priority: 0,
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
  origin: "bridge",
  lostAfterMs: null,
  nodeUnreachableSince: null,
  lateExit: null,
  outputCut: null,
  ...overrides,
});

const unknownUnit = () => new MeshApiError("unknown_unit", "no such unit", 404);

class FakeBroker implements Broker {
  submitted: { options: SubmitOptions; payload: string }[] = [];
  units = new Map<string, UnitRecord | MeshApiError>();
  cancelError: MeshApiError | null = null;
  nodes: MeshStatus["nodes"] = [
    node("edge-1", [wt("cat", { allowRuntimeParams: true })]),
    node("bridge", [wt("cat"), wt("local", { allowRuntimeParams: true })]),
  ];
  listed: string[] = [];

  status = async (): Promise<MeshStatus> => ({ mesh: "m", nodes: this.nodes, units: { pending: 0, running: 0 } });
  records = async (origin: string): Promise<UnitRecord[]> => {
    this.listed.push(origin);
    return [...this.units.values()].filter(
      (u): u is UnitRecord => !(u instanceof MeshApiError) && u.origin === origin && u.state !== "Released",
    );
  };
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
  /** Takes the payload as the broker would: a framed one must end with its end marker. */
  submit = async (options: SubmitOptions): Promise<UnitRecord> => {
    const chunks: Buffer[] = [];
    for await (const chunk of options.payload as Readable) chunks.push(Buffer.from(chunk));
    let payload = Buffer.concat(chunks).toString();
    if (options.payloadFramed) {
      const decoder = new PieceDecoder();
      const parts = decoder.push(Buffer.concat(chunks));
      if (!parts.ok || !decoder.finish(0).ok) throw new Error("the framed payload was cut");
      payload = Buffer.concat(parts.value).toString();
    }
    this.submitted.push({ options, payload });
    return record(options.unitId!, { state: "Pending", stateNumber: 0, targetNode: options.node ?? null });
  };
  results: Broker["results"] = async () => 0;
}

async function run(
  line: string,
  broker: FakeBroker,
  payload: Readable = Readable.from([]),
  more: Partial<CommandContext> = {},
) {
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
    bridge: () => ({ nodeId: "bridge", cpuCount: 1, memoryMiB: 1, now: new Date(0) }),
    signingKey: null,
    secureLink: true,
    log: createLogger("error"),
    ...more,
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
          ttl: "300s",
          unitId: id,
          origin: "bridge",
          // Unsigned: streamed as it came, framed (an early start for ansible-runner worker).
          payloadFramed: true,
        }),
        payload: "hello",
      },
    ]);
  });

  it.each(["localhost", "LOCALHOST", "bridge", ""])(
    "sends work for node %j to the agent with the bridge's node id only",
    async (target) => {
      const broker = new FakeBroker();
      await run(
        JSON.stringify({
          command: "work",
          subcommand: "submit",
          node: target,
          worktype: "local",
          params: "--private-data-dir=/tmp/x",
        }),
        broker,
      );
      expect(broker.submitted[0]!.options.node).toBe("bridge");
    },
  );

  it("refuses local work at once when the bridge's own agent is not connected", async () => {
    const broker = new FakeBroker();
    broker.nodes = [node("edge-1", [wt("local")]), node("bridge", [wt("local")], { connected: false })];
    const { after, written } = await run(
      '{"command":"work","subcommand":"submit","node":"localhost","worktype":"local"}',
      broker,
    );
    expect(after).toBe("close");
    expect(written).toMatch(
      /^ERROR: unknown work type local \(no agent with node id bridge, this control service's own node, is connected\)\n$/,
    );
    expect(broker.submitted).toEqual([]);
  });

  it("ends the session without Job Submitted when the payload breaks off (the framed body lacks its end)", async () => {
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
    expect(
      await run('{"command":"work","subcommand":"submit","node":"edge-9","worktype":"cat","signwork":"true"}', broker),
    ).toEqual({
      after: "close",
      written: "ERROR: cannot sign work: signing key is empty\n",
    });
    expect(
      (await run('{"command":"work","subcommand":"submit","node":"edge-1","worktype":"cat","signwork":"true"}', broker))
        .written,
    ).toBe("ERROR: work type did not expect a signature\n");
    expect(
      (await run('{"command":"work","subcommand":"submit","node":"edge-1","worktype":"cat","ttl":"later"}', broker))
        .written,
    ).toMatch(/^ERROR: bad duration "later"/);
    expect(broker.submitted).toEqual([]);
  });

  it("refuses secret_* params over a plain-HTTP broker link, before taking a payload", async () => {
    const broker = new FakeBroker();
    const line = '{"command":"work","subcommand":"submit","node":"edge-1","worktype":"cat","Secret_kube_config":"x"}';
    expect((await run(line, broker, Readable.from([]), { secureLink: false })).written).toBe(
      "ERROR: cannot send secrets over a non-TLS connection\n",
    );
    expect(broker.submitted).toEqual([]);
    await run(line, broker);
    expect(broker.submitted[0]!.options.params).toEqual({ Secret_kube_config: "x" });
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

describe("signed work", () => {
  const key = generateKeyPairSync("ed25519").privateKey;
  const claimsOf = (signature: string) =>
    JSON.parse(Buffer.from(signature.split(".")[0]!, "base64url").toString()) as { exp: number; node: string };

  it("signs for the unit's whole wait: no ttl gives SIGNED_WAIT_MS as both the ttl and the signature's lifetime", async () => {
    const broker = new FakeBroker();
    broker.nodes = [node("edge-1", [wt("ansible-runner", { verifySignature: true, allowRuntimeParams: true })])];
    const before = Math.floor(Date.now() / 1000);
    await run(
      '{"command":"work","subcommand":"submit","node":"edge-1","worktype":"ansible-runner","signwork":"true"}',
      broker,
      Readable.from(["x"]),
      {
        signingKey: key,
      },
    );
    const { options } = broker.submitted[0]!;
    expect(options.ttl).toBe(`${SIGNED_WAIT_MS / 1000}s`);
    const claims = claimsOf(options.signature!);
    expect(claims.node).toBe("edge-1");
    expect(claims.exp - before).toBeGreaterThanOrEqual(SIGNED_WAIT_MS / 1000);
    expect(claims.exp - before).toBeLessThanOrEqual(SIGNED_WAIT_MS / 1000 + 5);
  });

  it("a ttl bounds both", async () => {
    const broker = new FakeBroker();
    broker.nodes = [node("edge-1", [wt("ansible-runner", { verifySignature: true, allowRuntimeParams: true })])];
    await run(
      '{"command":"work","subcommand":"submit","node":"edge-1","worktype":"ansible-runner","signwork":"true","ttl":"20s"}',
      broker,
      Readable.from([]),
      {
        signingKey: key,
      },
    );
    const { options } = broker.submitted[0]!;
    expect(options.ttl).toBe("20s");
    expect(claimsOf(options.signature!).exp - Date.now() / 1000).toBeLessThanOrEqual(20);
  });
});

describe("unit commands", () => {
  it("lists the units submitted through this bridge, in one request", async () => {
    const broker = new FakeBroker();
    broker.units.set("Aa000001", record("Aa000001"));
    broker.units.set("Aa000002", record("Aa000002", { origin: "other" }));
    const { written } = await run("work list", broker);
    expect(Object.keys(JSON.parse(written))).toEqual(["Aa000001"]);
    expect(broker.listed).toEqual(["bridge"]);
  });

  it("refuses to release another bridge's unit, and releases its own and meshctl's", async () => {
    const broker = new FakeBroker();
    broker.units.set("Aa000001", record("Aa000001", { origin: "other" }));
    broker.units.set("Aa000002", record("Aa000002"));
    broker.units.set("Aa000003", record("Aa000003", { origin: null }));
    expect(await run("work release Aa000001", broker)).toEqual({
      after: "next",
      written: "ERROR: unknown work unit Aa000001 (submitted through control service other; release it there)\n",
    });
    expect((await run("work release Aa000002", broker)).written).toBe('{"released":"Aa000002"}\n');
    expect((await run("work force-release Aa000003", broker)).written).toBe('{"released":"Aa000003"}\n');
  });

  it("answers reload with success: there is no config to reload", async () => {
    expect(await run("reload", new FakeBroker())).toEqual({ after: "next", written: '{"Success":true}\n' });
  });

  it("says unknown work unit in receptor's words, and keeps the connection", async () => {
    expect(await run("work status Zz000000", new FakeBroker())).toEqual({
      after: "next",
      written: "ERROR: unknown work unit Zz000000\n",
    });
  });

  it("refuses to cancel another bridge's unit, and cancels its own and meshctl's", async () => {
    const broker = new FakeBroker();
    broker.units.set("Aa000001", record("Aa000001", { origin: "other" }));
    broker.units.set("Aa000002", record("Aa000002"));
    broker.units.set("Aa000003", record("Aa000003", { origin: null }));
    expect(await run("work cancel Aa000001", broker)).toEqual({
      after: "next",
      written: "ERROR: unknown work unit Aa000001 (submitted through control service other; cancel it there)\n",
    });
    expect((await run("work cancel Aa000002", broker)).written).toBe('{"cancelled":"Aa000002"}\n');
    expect((await run("work cancel Aa000003", broker)).written).toBe('{"cancelled":"Aa000003"}\n');
  });

  it("answers cancelled for a released unit: release implied the cancel", async () => {
    const broker = new FakeBroker();
    broker.units.set("Aa000001", record("Aa000001", { state: "Released", stateNumber: 5 }));
    broker.cancelError = new MeshApiError("unit_released", "the unit was released", 410);
    expect((await run("work cancel Aa000001", broker)).written).toBe('{"cancelled":"Aa000001"}\n');
    broker.cancelError = new MeshApiError("unreachable", "cannot reach the broker", 0);
    expect((await run("work cancel Aa000001", broker)).written).toBe("ERROR: cannot reach the broker\n");
  });

  it("answers unknown work unit for a released unit's status and results, before any header", async () => {
    const broker = new FakeBroker();
    broker.units.set("Aa000001", record("Aa000001", { state: "Released", stateNumber: 5 }));
    for (const line of ["work results Aa000001", "work status Aa000001", "work list Aa000001"]) {
      expect(await run(line, broker)).toEqual({ after: "next", written: "ERROR: unknown work unit Aa000001\n" });
    }
  });

  it("streams results after the header, then closes", async () => {
    const broker = new FakeBroker();
    broker.units.set("Aa000001", record("Aa000001"));
    const asked: unknown[] = [];
    broker.results = async (id, _out, options) => {
      asked.push({ id, offset: options?.offset, follow: options?.follow });
      return 0;
    };
    expect(await run("work results Aa000001 7", broker)).toEqual({
      after: "close",
      written: "Streaming results for work unit Aa000001\n",
    });
    expect(asked).toEqual([{ id: "Aa000001", offset: 7, follow: true }]);
  });
});

describe("ping", () => {
  it("reaches itself and connected nodes, and reports the rest", async () => {
    const broker = new FakeBroker();
    broker.nodes = [node("edge-1", [])];
    for (const target of ["bridge", "edge-1"])
      expect(JSON.parse((await run(`ping ${target}`, broker)).written)).toMatchObject({ Success: true, From: target });
    expect(JSON.parse((await run("ping edge-2", broker)).written)).toEqual({
      Success: false,
      Error: "node edge-2 is not connected to mesh m",
    });
  });
});
