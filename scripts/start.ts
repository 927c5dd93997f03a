/**
 * `npm start`: a local broker on workerd with its state in .mesh/, one local agent, and a demo unit.
 * Prints MESH_BROKER= and MESH_TOKEN= lines for meshctl and scripts, then keeps both running
 * until Ctrl-C.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ROOT, startBroker } from "./local-broker.js";

const STATE = join(ROOT, ".mesh");
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
    const known = await fetch(`${brokerUrl}/v1/meshes/default/status`, { headers: { authorization: `Bearer ${kept}` } });
    if (known.status !== 401) return kept;
  }
  const response = await fetch(`${brokerUrl}/v1/meshes/default/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
    body: JSON.stringify({ role: "agent", name: "npm start's local agent" }),
  });
  if (response.status !== 201) throw new Error(`could not create the local agent's token: HTTP ${response.status} ${await response.text()}`);
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

function run(command: string, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn("sh", ["-c", command], { cwd: ROOT, stdio: "inherit", env });
    child.once("exit", (code) => resolve(code ?? 1));
  });
}

async function main(): Promise<void> {
  if (!existsSync(AGENT) || !existsSync(MESHCTL)) {
    if ((await run("npm run build", process.env)) !== 0) throw new Error("npm run build failed");
  }
  await mkdir(STATE, { recursive: true, mode: 0o700 });
  const token = await adminToken();
  const port = Number(process.env.MESH_PORT ?? 8787);
  console.log(`Starting the broker on local workerd (state in .mesh/state, log in .mesh/broker.log) …`);
  const broker = await startBroker({ stateDir: join(STATE, "state"), token, logFile: join(STATE, "broker.log"), port });

  const hasRunner = await onPath("ansible-runner");
  const config = join(STATE, "agent.yml");
  await writeFile(
    config,
    [
      "# Written by npm start. Work types this local agent offers (receptor work-command syntax).",
      "- node: {id: local}",
      ...(hasRunner ? ["- work-command: {worktype: ansible-runner, command: ansible-runner, params: worker}"] : []),
      "- work-command: {worktype: cat, command: cat}",
      "- work-command: {worktype: sha256sum, command: sha256sum}",
      "",
    ].join("\n"),
  );
  const agentLog = createWriteStream(join(STATE, "agent.log"), { flags: "a" });
  const agent: ChildProcess = spawn(process.execPath, [AGENT, "--config", config, "--work-dir", join(STATE, "agent")], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, MESH_BROKER: broker.url, MESH_TOKEN: await agentToken(broker.url, token), MESH_ID: "default" },
  });
  agent.stdout?.pipe(agentLog);
  agent.stderr?.pipe(agentLog);
  const env = { ...process.env, MESH_BROKER: broker.url, MESH_TOKEN: token, MESH_ID: "default" };
  const shutdown = async () => {
    agent.kill("SIGTERM");
    await broker.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown());
  process.on("SIGTERM", () => void shutdown());

  for (let i = 0; i < 50 && (await run(`node ${MESHCTL} status --json | grep -q '"connected": true'`, env)) !== 0; i++) {
    await new Promise((r) => setTimeout(r, 200));
  }
  await run(`node ${MESHCTL} status`, env);
  if (hasRunner) {
    console.log("\nDemo: ansible-runner transmit demo -p site.yml | meshctl work submit ansible-runner -f -p - | ansible-runner process .mesh/demo-out\n");
    await run(
      `rm -rf .mesh/demo-out && ansible-runner transmit demo -p site.yml | node ${MESHCTL} work submit ansible-runner -f -p - | ansible-runner process .mesh/demo-out`,
      env,
    );
    await run(`echo "status: $(cat .mesh/demo-out/artifacts/*/status 2>/dev/null || cat .mesh/demo-out/artifacts/status)"`, env);
  } else {
    console.log("\nansible-runner is not installed, so the demo uses the generic work type `cat`.");
    console.log("To run playbooks: apt-get install -y ansible-core python3-ansible-runner (Debian/Ubuntu), or pip install ansible-runner.\n");
    console.log("Demo: meshctl work submit cat -f -p demo/project/site.yml\n");
    await run(`node ${MESHCTL} work submit cat -f -p demo/project/site.yml`, env);
  }
  console.log(`\nBroker and agent are running (logs in .mesh/). Use them from another shell:\n`);
  console.log(`MESH_BROKER=${broker.url}`);
  console.log(`MESH_TOKEN=${token}`);
  console.log(`\n  export MESH_BROKER=${broker.url} MESH_TOKEN=${token}`);
  console.log("  node dist/meshctl/cli.js status     # or: npx meshctl status");
  console.log(`\nDashboard: open ${broker.url}/ and sign in with mesh "default" and the token above (or a read token).`);
  console.log("\nCtrl-C stops both.");
}

main().catch((error: unknown) => {
  console.error(`npm start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
