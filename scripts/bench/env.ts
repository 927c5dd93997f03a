/**
 * What every benchmark runs against: one local broker of its own (wrangler dev on its own port,
 * state under a temp dir) and real `mesh-agent` processes from dist/, each in a mesh of its own.
 */
import { createWriteStream } from "node:fs";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "undici";
import type { MeshStatus } from "../../shared/unit.js";
import { type LocalBroker, ROOT, startBroker } from "../local-broker.js";

export const AGENT_BIN = join(ROOT, "dist/agent/cli.js");
export const MESHCTL_BIN = join(ROOT, "dist/meshctl/cli.js");

/**
 * The broker's per-token submit rate would throttle the unit-heavy benchmarks, and its node quota
 * (MAX_NODES, 1,000 by default) would stop the connections benchmark: quotas are not what is measured.
 */
export const BROKER_VARS = { SUBMITS_PER_MINUTE: "1000000", MAX_NODES: "100000" };

/** Node flags for the agents, to profile them: BENCH_AGENT_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR". */
const AGENT_NODE_ARGS = (process.env.BENCH_AGENT_NODE_ARGS ?? "").split(" ").filter(Boolean);
/** The Node that runs the agents (BENCH_AGENT_NODE=/usr/bin/node: an older one, e.g. Node 20 without a built-in WebSocket). */
const AGENT_NODE = process.env.BENCH_AGENT_NODE ?? process.execPath;

export interface BenchAgent {
  pid: number;
  /** The agent's JSON log lines so far (info level). */
  events(): { time: string; event: string; unit?: string; warm?: boolean }[];
  stop(): Promise<void>;
}

export class BenchEnv {
  private readonly agents = new Set<BenchAgent>();

  constructor(
    readonly dir: string,
    public broker: LocalBroker,
    /** What runs the broker: `mesh-broker serve` (production, npm start) or `wrangler dev`. */
    readonly runtime: "serve" | "wrangler" = "serve",
  ) {}

  static async start(dir: string, token: string, runtime: "serve" | "wrangler" = "serve"): Promise<BenchEnv> {
    const broker = await startBroker({
      stateDir: join(dir, "state"),
      token,
      logFile: join(dir, "broker.log"),
      vars: BROKER_VARS,
      runtime,
    });
    return new BenchEnv(dir, broker, runtime);
  }

  /** Stops the broker and starts it again on the same port and state, as a deploy or crash would. */
  async restartBroker(): Promise<void> {
    await this.broker.stop();
    this.broker = await startBroker({
      stateDir: join(this.dir, "state"),
      token: this.broker.token,
      logFile: join(this.dir, "broker.log"),
      port: this.broker.port,
      vars: BROKER_VARS,
      runtime: this.runtime,
    });
  }

  /** Starts an agent offering `workTypes` (receptor work-command YAML lines) and waits for it to connect. */
  async startAgent(mesh: string, workTypes: string[], opts: { capacity?: number } = {}): Promise<BenchAgent> {
    const dir = join(this.dir, `agent-${mesh}`);
    await mkdir(dir, { recursive: true });
    const config = join(dir, "agent.yml");
    await writeFile(config, workTypes.map((w) => `- work-command: ${w}\n`).join(""));
    const child: ChildProcess = spawn(
      AGENT_NODE,
      [
        ...AGENT_NODE_ARGS,
        AGENT_BIN,
        "--broker",
        this.broker.url,
        "--token",
        this.broker.token,
        "--mesh",
        mesh,
        "--node-id",
        "bench",
        "--config",
        config,
        "--work-dir",
        join(dir, "work"),
        "--capacity",
        String(opts.capacity ?? 2),
        "--log-level",
        "info",
      ],
      { cwd: dir, stdio: ["ignore", "ignore", "pipe"] },
    );
    let buffered = "";
    const lines: string[] = [];
    // Kept on disk too (the bench keeps its dir when a run fails): the agent's side of a failure.
    const logFile = createWriteStream(join(dir, "agent.log"), { flags: "a" });
    child.stderr?.pipe(logFile);
    child.stderr?.on("data", (chunk: Buffer) => {
      const parts = (buffered + chunk.toString()).split("\n");
      buffered = parts.pop() ?? "";
      lines.push(...parts);
    });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const agent: BenchAgent = {
      pid: child.pid!,
      events: () =>
        lines.flatMap((line) => {
          try {
            return [JSON.parse(line) as { time: string; event: string; unit?: string; warm?: boolean }];
          } catch {
            return [];
          }
        }),
      stop: async () => {
        // SIGINT, not SIGKILL: under --cpu-prof the profile is written on a normal exit only.
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
        this.agents.delete(agent);
      },
    };
    this.agents.add(agent);
    const deadline = Date.now() + 30_000;
    while (!(await this.status(mesh)).nodes.some((n) => n.nodeId === "bench" && n.connected)) {
      if (child.exitCode !== null) throw new Error(`agent exited early:\n${lines.join("\n")}`);
      if (Date.now() > deadline) throw new Error(`agent did not connect to mesh ${mesh} within 30 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return agent;
  }

  async status(mesh: string): Promise<MeshStatus> {
    const response = await request(`${this.broker.url}/v1/meshes/${mesh}/status`, { headers: this.auth() });
    return (await response.body.json()) as MeshStatus;
  }

  auth(): Record<string, string> {
    return { authorization: `Bearer ${this.broker.token}` };
  }

  /** Environment for meshctl in a shell pipeline. */
  shellEnv(mesh: string): NodeJS.ProcessEnv {
    return {
      ...process.env,
      MESH_BROKER: this.broker.url,
      MESH_TOKEN: this.broker.token,
      MESH_ID: mesh,
      MESHCTL: `${process.execPath} ${MESHCTL_BIN}`,
    };
  }

  async stop(): Promise<void> {
    await Promise.all([...this.agents].map((a) => a.stop()));
    await this.broker.stop();
  }
}
