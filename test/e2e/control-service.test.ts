/**
 * `meshctl control-service` spoken to byte for byte, as receptorctl and AWX speak receptor's
 * control socket (../shared/reference/receptor.md), with a real agent and Debian's ansible-runner.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { stat, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/local-broker.js";
import type { UnitRecord } from "../../shared/unit.js";
import {
  MESHCTL_BIN,
  type RunningAgent,
  api,
  broker,
  newMesh,
  sh,
  startAgent,
  tempDir,
  waitFinished,
  waitFor,
} from "./harness.js";

const mesh = newMesh();
const NODE = "ctl-node";
const BRIDGE = "bridge-1";
const WAIT_MS = 60_000;
let agent: RunningAgent;
let dir: string;
let socketPath: string;
let tcpPort: number;
let service: ChildProcess;
let serviceLog = "";
let keyDir: string;

function startService(args: string[]): ChildProcess {
  const { url, token } = broker();
  return spawn(process.execPath, [MESHCTL_BIN, "control-service", ...args], {
    env: { ...process.env, MESH_BROKER: url, MESH_TOKEN: token, MESH_ID: mesh },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** A client of the control socket: lines and raw bytes, each read with a bounded wait. */
class Client {
  private buffer = Buffer.alloc(0);
  private ended = false;
  private waiter: (() => void) | null = null;

  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiter?.();
    });
    socket.on("end", () => {
      this.ended = true;
      this.waiter?.();
    });
    socket.on("error", () => undefined);
  }

  static open(target: string | number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = typeof target === "string" ? connect(target) : connect(target, "127.0.0.1");
      socket.once("connect", () => resolve(new Client(socket)));
      socket.once("error", reject);
    });
  }

  private async until(ready: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + WAIT_MS;
    while (!ready()) {
      if (this.ended)
        throw new Error(`connection ended while waiting for ${what}; got ${JSON.stringify(this.buffer.toString())}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** One line including its "\n". */
  async line(): Promise<string> {
    await this.until(() => this.buffer.includes(0x0a), "a line");
    const end = this.buffer.indexOf(0x0a) + 1;
    const line = this.buffer.subarray(0, end).toString();
    this.buffer = this.buffer.subarray(end);
    return line;
  }

  async json(line: string): Promise<Record<string, unknown>> {
    this.socket.write(line);
    const reply = await this.line();
    expect(reply.startsWith("ERROR"), reply).toBe(false);
    return JSON.parse(reply) as Record<string, unknown>;
  }

  /** Everything until the server closes. */
  async rest(): Promise<Buffer> {
    await this.until(() => this.ended, "the server to close");
    const rest = this.buffer;
    this.buffer = Buffer.alloc(0);
    return rest;
  }
}

async function session(target: string | number = socketPath): Promise<Client> {
  const client = await Client.open(target);
  expect(await client.line()).toBe(`Receptor Control, node ${BRIDGE}\n`);
  return client;
}

/** receptorctl's submit: command, first reply, payload, half-close, second reply. */
async function submit(command: object | string, payload: Buffer | string): Promise<string> {
  const client = await session();
  client.socket.write(typeof command === "string" ? command : `${JSON.stringify(command)}\n`);
  const created = await client.line();
  const match = /^Work unit created with ID ([0-9a-zA-Z]{8})\. Send stdin data and EOF\.\n$/.exec(created);
  expect(match, created).not.toBeNull();
  const id = match![1]!;
  client.socket.end(payload);
  expect(await client.line()).toBe(`{"result":"Job Submitted","unitid":"${id}"}\n`);
  expect((await client.rest()).byteLength).toBe(0);
  return id;
}

async function results(id: string, startpos?: number): Promise<Buffer> {
  const client = await session();
  client.socket.write(startpos === undefined ? `work results ${id}\n` : `work results ${id} ${startpos}\n`);
  expect(await client.line()).toBe(`Streaming results for work unit ${id}\n`);
  // receptorctl half-closes once the header is read; the stream must go on regardless.
  client.socket.end();
  return client.rest();
}

const unitState = async (id: string) => (await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body.state;

function run(
  command: string,
  args: string[],
  input?: Buffer,
): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: ROOT });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d) => (err += d));
    child.once("exit", (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr: err }));
    child.stdin.end(input);
  });
}

beforeAll(async () => {
  const check = await sh(mesh, "command -v ansible-runner");
  if (check.code !== 0)
    throw new Error("ansible-runner is not installed: apt-get install -y ansible-core python3-ansible-runner");
  dir = await tempDir("mesh-control-");
  keyDir = join(dir, "keys");
  const keys = await sh(mesh, `$MESHCTL keygen --out ${keyDir}`);
  expect(keys.code, keys.stderr).toBe(0);
  agent = await startAgent({
    mesh,
    nodeId: NODE,
    capacity: 4,
    config: `
- work-command: {worktype: cat, command: cat}
- work-command: {worktype: ansible-runner, command: ansible-runner, params: worker}
- work-command: {worktype: sleep, command: sleep, params: "120"}
- work-command: {worktype: signed-cat, command: cat, verifysignature: true}
- work-verification: {publickey: ${keyDir}/verify-key.pem}
`,
  });
  socketPath = join(dir, "control.sock");
  service = startService([
    "--socket",
    socketPath,
    "--tcp",
    "127.0.0.1:0",
    "--node-id",
    BRIDGE,
    "--sign-key",
    join(keyDir, "signing-key.pem"),
  ]);
  service.stderr?.on("data", (d) => (serviceLog += d));
  await waitFor(() => {
    if (service.exitCode !== null) throw new Error(`control-service exited:\n${serviceLog}`);
    return serviceLog.includes('"event":"control:listening"');
  }, "the control service to listen");
  tcpPort = Number(/"tcp":"127\.0\.0\.1:(\d+)"/.exec(serviceLog)![1]);
});

afterAll(async () => {
  if (service && service.exitCode === null && service.signalCode === null) {
    const exited = new Promise((resolve) => service.once("exit", resolve));
    service.kill("SIGTERM");
    // A failed test may leave it stuck; it must not outlive the run.
    const timer = setTimeout(() => service.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
  await agent?.stop();
});

describe("receptor control socket", () => {
  it("greets, and answers several commands on one connection: version probe, status, ping", async () => {
    expect((await stat(socketPath)).mode & 0o777).toBe(0o600);
    const client = await session();
    // The receptor release whose protocol the bridge speaks: receptorctl 1.4.9 prints no version warning.
    expect(await client.json('{"command":"status","requested_fields":["Version"]}\n')).toEqual({ Version: "1.4.9" });
    const status = await client.json("status\n");
    expect(status.NodeID).toBe(BRIDGE);
    expect(status.Connections).toEqual([{ NodeID: NODE, Cost: 1 }]);
    expect(status.RoutingTable).toEqual({ [NODE]: NODE });
    const ad = (
      status.Advertisements as { NodeID: string; Time: string; WorkCommands: { WorkType: string; Secure: boolean }[] }[]
    ).find((a) => a.NodeID === NODE)!;
    expect(ad.WorkCommands).toEqual([
      { WorkType: "cat", Secure: false },
      { WorkType: "ansible-runner", Secure: false },
      { WorkType: "sleep", Secure: false },
      { WorkType: "signed-cat", Secure: true },
    ]);
    expect(Number.isNaN(Date.parse(ad.Time))).toBe(false);
    expect(typeof status.SystemCPUCount).toBe("number");
    expect(typeof status.SystemMemoryMiB).toBe("number");
    const pong = await client.json(`ping ${NODE}\n`);
    expect(pong).toMatchObject({ Success: true, From: NODE });
    expect(typeof pong.Time).toBe("number");
    expect(typeof pong.TimeStr).toBe("string");
    expect(await client.json("ping nowhere\n")).toEqual({
      Success: false,
      Error: `node nowhere is not connected to mesh ${mesh}`,
    });
    client.socket.end();
    expect((await client.rest()).byteLength).toBe(0);
  });

  it("answers an unknown command, malformed JSON and unknown units with ERROR lines, and keeps going", async () => {
    const client = await session(tcpPort);
    client.socket.write("frobnicate\n");
    expect(await client.line()).toBe("ERROR: Unknown command\n");
    client.socket.write('{"command": "work", "subcommand": \n');
    expect(await client.line()).toMatch(/^ERROR: invalid JSON command: .+\n$/);
    client.socket.write('{"subcommand":"list"}\r\n');
    expect(await client.line()).toBe("ERROR: JSON did not contain a command\n");
    client.socket.write("work status Zz999999\n");
    expect(await client.line()).toBe("ERROR: unknown work unit Zz999999\n");
    client.socket.write('{"command":"work","subcommand":"release","unitid":"../etc"}\n');
    expect(await client.line()).toBe("ERROR: unknown work unit ../etc\n");
    client.socket.write('{"command":"work","subcommand":"submit","node":"ctl-node","worktype":"cat","ttl":"soon"}\n');
    expect(await client.line()).toMatch(/^ERROR: bad duration "soon"/);
    // A refused submit ends the connection: what follows could be its payload.
    expect((await client.rest()).byteLength).toBe(0);
    // localhost is this bridge's own agent (node bridge-1), which is not connected: refused at once.
    const local = await session();
    local.socket.write('{"command":"work","subcommand":"submit","node":"localhost","worktype":"cat"}\n');
    expect(await local.line()).toBe(
      `ERROR: unknown work type cat (no agent with node id ${BRIDGE}, this control service's own node, is connected)\n`,
    );
  });

  it("runs an ansible-runner transmit payload, and its results give `ansible-runner process` a successful run", async () => {
    const transmit = await run("ansible-runner", ["transmit", "demo", "-p", "site.yml"]);
    expect(transmit.code, transmit.stderr).toBe(0);
    const id = await submit(
      { command: "work", subcommand: "submit", node: NODE, worktype: "ansible-runner", ttl: "10m" },
      transmit.stdout,
    );
    const record = (await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body;
    expect(record.payloadSize).toBe(transmit.stdout.byteLength);
    expect(record.targetNode).toBe(NODE);

    const output = await results(id);
    const processed = await run("ansible-runner", ["process", join(dir, "process-out")], output);
    expect(processed.code, processed.stderr).toBe(0);
    const artifacts = join(dir, "process-out", "artifacts");
    const status = await sh(mesh, `cat ${artifacts}/*/status 2>/dev/null || cat ${artifacts}/status`);
    expect(status.stdout.toString().trim()).toBe("successful");

    const client = await session();
    const unit = await client.json(`work status ${id}\n`);
    expect(unit).toMatchObject({ State: 2, StateName: "Succeeded", StdoutSize: output.byteLength, WorkType: "remote" });
    expect(unit.ExtraData).toMatchObject({
      RemoteNode: NODE,
      RemoteWorkType: "ansible-runner",
      RemoteUnitID: id,
      LocalReleased: false,
    });
    expect(Object.keys(await client.json("work list\n"))).toContain(id);
    expect((await results(id, 100)).equals(output.subarray(100))).toBe(true);
  });

  it("cancels, releases and force-releases; a released unit is unknown to status, results and `work list`", async () => {
    const id = await submit(`work submit ${NODE} sleep\n`, "");
    await waitFor(async () => (await unitState(id)) === "Running", "the sleep unit to run", WAIT_MS);
    const client = await session();
    expect(await client.json(`work cancel ${id}\n`)).toEqual({ cancelled: id });
    await waitFor(async () => (await unitState(id)) === "Canceled", "the unit to be Canceled", WAIT_MS);
    expect(await client.json(`work status ${id}\n`)).toMatchObject({ State: 4, StateName: "Canceled" });
    expect(await client.json(`work release ${id}\n`)).toEqual({ released: id });
    client.socket.write(`work status ${id}\n`);
    expect(await client.line()).toBe(`ERROR: unknown work unit ${id}\n`);
    expect(Object.keys(await client.json("work list\n"))).not.toContain(id);
    expect(await client.json(`work release ${id}\n`)).toEqual({ released: id });
    expect(await client.json(`{"command":"work","subcommand":"cancel","unitid":"${id}"}\n`)).toEqual({ cancelled: id });
    client.socket.write(`work results ${id}\n`);
    expect(await client.line()).toBe(`ERROR: unknown work unit ${id}\n`);

    const running = await submit(`work submit ${NODE} sleep\n`, "");
    await waitFor(async () => (await unitState(running)) === "Running", "the second sleep unit to run", WAIT_MS);
    expect(await client.json(`work force-release ${running}\n`)).toEqual({ released: running });
    expect(await unitState(running)).toBe("Released");
    client.socket.end();
  });

  it("fails the unit of a client that goes away mid-payload (never run as if whole), and a unit submitted meanwhile is unaffected", async () => {
    const payload = Buffer.alloc(256 * 1024, "x");
    const quitter = await session();
    quitter.socket.write('{"command":"work","subcommand":"submit","node":"ctl-node","worktype":"cat"}\n');
    const abandoned = /ID ([0-9a-zA-Z]{8})\./.exec(await quitter.line())![1]!;
    quitter.socket.write(payload.subarray(0, 100_000));

    const steady = await session();
    steady.socket.write(`work submit ${NODE} cat\n`);
    const kept = /ID ([0-9a-zA-Z]{8})\./.exec(await steady.line())![1]!;
    steady.socket.write("hello ");
    quitter.socket.destroy();
    steady.socket.end("world\n");
    expect(await steady.line()).toBe(`{"result":"Job Submitted","unitid":"${kept}"}\n`);

    await waitFor(async () => (await unitState(kept)) === "Succeeded", "the unaffected unit to succeed", WAIT_MS);
    expect((await results(kept)).toString()).toBe("hello world\n");
    await waitFor(
      () => serviceLog.includes(`"event":"control:submit-abandoned","unit":"${abandoned}"`),
      "the bridge to drop the submission",
    );
    // Unsigned, its payload was streamed as it came (framed): the body lacked its end marker.
    const failed = await waitFinished(mesh, abandoned, WAIT_MS);
    expect(failed.state).toBe("Failed");
    expect(failed.detail).toMatch(/^payload_incomplete: /);
    expect(failed.stdoutSize).toBe(0);
  });

  it("signs units submitted with signwork, as AWX submits them; refuses unsigned work to a verifying work type at submit", async () => {
    const signed = await submit(
      { command: "work", subcommand: "submit", node: NODE, worktype: "signed-cat", signwork: "true" },
      "signed\n",
    );
    await waitFor(async () => (await unitState(signed)) === "Succeeded", "the signed unit to succeed", WAIT_MS);
    expect((await results(signed)).toString()).toBe("signed\n");
    const client = await session();
    expect(await client.json(`work status ${signed}\n`)).toMatchObject({ ExtraData: { SignWork: true } });
    client.socket.write(
      `{"command":"work","subcommand":"submit","node":"${NODE}","worktype":"signed-cat","signwork":"false"}\n`,
    );
    expect(await client.line()).toBe("ERROR: could not verify signature: signature is empty\n");
    const again = await session();
    again.socket.write(
      `{"command":"work","subcommand":"submit","node":"${NODE}","worktype":"cat","signwork":"true"}\n`,
    );
    expect(await again.line()).toBe("ERROR: work type did not expect a signature\n");
  });

  it("stops following results for a client that went away", async () => {
    const id = await submit(`work submit ${NODE} sleep\n`, "");
    const follower = await session();
    follower.socket.write(`work results ${id}\n`);
    expect(await follower.line()).toBe(`Streaming results for work unit ${id}\n`);
    follower.socket.destroy();
    await waitFor(
      () => serviceLog.includes(`"event":"control:results-abandoned","unit":"${id}"`),
      "the bridge to stop following",
    );
    const client = await session();
    expect(await client.json(`work release ${id}\n`)).toEqual({ released: id });
    client.socket.end();
  });

  it("fails the unit when a TCP client's connection is reset mid-payload", async () => {
    const client = await session(tcpPort);
    client.socket.write(`work submit ${NODE} cat\n`);
    const id = /ID ([0-9a-zA-Z]{8})\./.exec(await client.line())![1]!;
    client.socket.write("half a payl");
    client.socket.resetAndDestroy();
    await waitFor(
      () => serviceLog.includes(`"event":"control:submit-abandoned","unit":"${id}"`),
      "the bridge to drop the submission",
    );
    const failed = await waitFinished(mesh, id, WAIT_MS);
    expect(failed.state).toBe("Failed");
    expect(failed.detail).toMatch(/^payload_incomplete: /);
  });

  it("refuses a --socket path that is a file or a live socket, and removes its socket on exit", async () => {
    const file = join(dir, "not-a-socket");
    await writeFile(file, "keep me");
    for (const [path, message] of [
      [file, /exists and is not a socket/],
      [socketPath, /another process is listening/],
    ] as const) {
      const other = startService(["--socket", path]);
      let err = "";
      other.stderr?.on("data", (d) => (err += d));
      const code = await new Promise((resolve) => other.once("exit", resolve));
      expect(code).toBe(1);
      expect(err).toMatch(message);
    }
    expect((await stat(file)).isFile()).toBe(true);

    const exited = new Promise((resolve) => service.once("exit", resolve));
    service.kill("SIGTERM");
    expect(await exited).toBe(0);
    await expect(stat(socketPath)).rejects.toMatchObject({ code: "ENOENT" });
  });
});
