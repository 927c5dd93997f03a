/**
 * `npm start`: a local broker (`mesh-broker serve` on loopback) with its state in .mesh/ (or
 * $MESH_HOME), one local agent, and a demo unit. Prints MESH_BROKER= and MESH_TOKEN= lines for
 * meshctl and scripts, then keeps both running until Ctrl-C, or until the agent exits, which it
 * reports (exit status 1).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { credentialPath, rebindCredential } from "../agent/credential.js";
import { ROOT, startBroker } from "./local-broker.js";

const STATE = process.env.MESH_HOME ? resolve(process.env.MESH_HOME) : join(ROOT, ".mesh");
const shown = (path: string) => relative(ROOT, path) || ".";
const MESHCTL = join(ROOT, "dist/meshctl/cli.js");
const AGENT = join(ROOT, "dist/agent/cli.js");

async function adminToken(): Promise<string> {
  const file = join(STATE, "admin-token");
  if (existsSync(file)) return (await readFile(file, "utf8")).trim();
  const token = randomBytes(24).toString("base64url");
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  return token;
}

/**
 * The local agent joins with a token of role `agent`, not the admin token: what a node holds is all
 * a compromised node can use. Made once through the API and kept in .mesh/agent-token (0600).
 */
async function agentToken(brokerUrl: string, admin: string): Promise<string> {
  const file = join(STATE, "agent-token");
  if (existsSync(file)) {
    const kept = (await readFile(file, "utf8")).trim();
    // 403: a token the broker knows (an agent token may not read status); 401: made for state since deleted.
    const known = await fetch(`${brokerUrl}/v1/meshes/default/status`, {
      headers: { authorization: `Bearer ${kept}` },
    });
    if (known.status !== 401) return kept;
  }
  const response = await fetch(`${brokerUrl}/v1/meshes/default/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
    body: JSON.stringify({ role: "agent", name: "npm start's local agent" }),
  });
  if (response.status !== 201)
    throw new Error(`could not create the local agent's token: HTTP ${response.status} ${await response.text()}`);
  const { token } = (await response.json()) as { token: string };
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  return token;
}

function onPath(command: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn("sh", ["-c", 'command -v "$1" >/dev/null', "sh", command], { stdio: "ignore" });
    child.once("exit", (code) => resolve(code === 0));
  });
}

/** The demo step running now: its own process group, so that all of a pipeline can be stopped. */
let step: ChildProcess | null = null;

function run(command: string, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn("sh", ["-c", command], { cwd: ROOT, stdio: "inherit", env, detached: true });
    step = child;
    child.once("exit", (code) => {
      if (step === child) step = null;
      resolve(code ?? 1);
    });
  });
}

function stopStep(): void {
  if (!step?.pid) return;
  try {
    process.kill(-step.pid, "SIGTERM");
  } catch {
    // Already gone.
  }
}

async function main(): Promise<void> {
  if (!existsSync(AGENT) || !existsSync(MESHCTL) || !existsSync(join(ROOT, "dist/broker/broker.json"))) {
    if ((await run("npm run build", process.env)) !== 0) throw new Error("npm run build failed");
  }
  await mkdir(STATE, { recursive: true, mode: 0o700 });
  const token = await adminToken();
  const port = Number(process.env.MESH_PORT ?? 8787);
  // serve keeps its objects in state/do. A state dir without it is new to this broker (first start,
  // or one made by an earlier version on wrangler dev, which kept them in state/v3): a credential
  // the local agent holds was issued by another broker's state, and would be refused.
  const freshBroker = !existsSync(join(STATE, "state", "do"));
  console.log(
    `Starting the broker (mesh-broker serve on workerd; state in ${shown(join(STATE, "state"))}, log in ${shown(join(STATE, "broker.log"))}) …`,
  );
  const broker = await startBroker({ stateDir: join(STATE, "state"), token, logFile: join(STATE, "broker.log"), port });

  const hasRunner = await onPath("ansible-runner");
  const config = join(STATE, "agent.yml");
  await writeFile(
    config,
    [
      "# Written by npm start. Work types this local agent offers (receptor work-command syntax).",
      "- node: {id: local}",
      ...(hasRunner
        ? ["- work-command: {worktype: ansible-runner, command: ansible-runner, params: worker, warmstart: true}"]
        : []),
      "- work-command: {worktype: cat, command: cat}",
      "- work-command: {worktype: sha256sum, command: sha256sum}",
      "",
    ].join("\n"),
  );
  const workDir = join(STATE, "agent");
  const credential = credentialPath(workDir);
  if (freshBroker && existsSync(credential)) {
    await rename(credential, `${credential}.old`);
    console.log(
      `The broker's state is new: the local agent joins anew (its old credential is kept in ${shown(`${credential}.old`)}).`,
    );
  }
  // The same state dir is the same broker on whatever port it listens now: the local node's
  // credential stays valid for it (else the agent's join would be refused: the node has joined).
  const moved = await rebindCredential(workDir, { broker: broker.url, mesh: "default", nodeId: "local" });
  if (moved) console.log(`The local node's credential now names ${broker.url} (it named ${moved}).`);
  const agentLogPath = join(STATE, "agent.log");
  const agentLog = createWriteStream(agentLogPath, { flags: "a" });
  const agent: ChildProcess = spawn(process.execPath, [AGENT, "--config", config, "--work-dir", workDir], {
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      MESH_BROKER: broker.url,
      MESH_TOKEN: await agentToken(broker.url, token),
      MESH_ID: "default",
    },
  });
  agent.stdout?.pipe(agentLog);
  agent.stderr?.pipe(agentLog);
  let agentTail = "";
  agent.stderr?.on("data", (data) => (agentTail = (agentTail + data).slice(-4096)));
  const env = { ...process.env, MESH_BROKER: broker.url, MESH_TOKEN: token, MESH_ID: "default" };
  let stopping = false;
  const shutdown = async (code: number) => {
    stopping = true;
    stopStep();
    agent.kill("SIGTERM");
    await broker.stop();
    process.exit(code);
  };
  // Without its agent nothing runs: say so and stop, rather than wait on a unit that never starts.
  agent.once("exit", (code, signal) => {
    if (stopping) return;
    const last = agentTail.trimEnd().split("\n").at(-1) ?? "";
    console.error(`\nnpm start: the local agent exited (${signal ?? `exit status ${code}`}); its last words: ${last}`);
    console.error(`Its log is ${shown(agentLogPath)}. Stopping the broker.`);
    void shutdown(1);
  });
  process.on("SIGINT", () => void shutdown(0));
  process.on("SIGTERM", () => void shutdown(0));

  for (
    let i = 0;
    i < 50 && (await run(`node ${MESHCTL} status --json | grep -q '"connected": true'`, env)) !== 0;
    i++
  ) {
    await new Promise((r) => setTimeout(r, 200));
  }
  await run(`node ${MESHCTL} status`, env);
  if (hasRunner) {
    const out = shown(join(STATE, "demo-out"));
    console.log(
      `\nDemo: ansible-runner transmit demo -p site.yml | meshctl work submit ansible-runner -f -p - | ansible-runner process ${out}\n`,
    );
    await run(
      `rm -rf "${out}" && ansible-runner transmit demo -p site.yml | node ${MESHCTL} work submit ansible-runner -f -p - | ansible-runner process "${out}"`,
      env,
    );
    await run(`echo "status: $(cat "${out}"/artifacts/*/status 2>/dev/null || cat "${out}"/artifacts/status)"`, env);
  } else {
    console.log("\nansible-runner is not installed, so the demo uses the generic work type `cat`.");
    console.log(
      "To run playbooks: apt-get install -y ansible-core python3-ansible-runner (Debian/Ubuntu), or pip install ansible-runner.\n",
    );
    console.log("Demo: meshctl work submit cat -f -p demo/project/site.yml\n");
    await run(`node ${MESHCTL} work submit cat -f -p demo/project/site.yml`, env);
  }
  console.log(`\nBroker and agent are running (logs in ${shown(STATE)}/). Use them from another shell:\n`);
  console.log(`MESH_BROKER=${broker.url}`);
  console.log(`MESH_TOKEN=${token}`);
  console.log(`\n  export MESH_BROKER=${broker.url} MESH_TOKEN=${token}`);
  console.log("  node dist/meshctl/cli.js status     # or: npx meshctl status");
  console.log(
    `\nDashboard: open ${broker.url}/ and sign in with mesh "default" and the token above (or a read token).`,
  );
  console.log("\nCtrl-C stops both.");
}

main().catch((error: unknown) => {
  console.error(`npm start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
