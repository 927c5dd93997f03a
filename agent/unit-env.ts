/**
 * The environment a unit's command gets: only variables a work command may need, never the agent's
 * own secrets. ansible-runner's worker writes its whole environment into the `starting` line of its
 * results, which readers of the unit see, so anything the agent passes on is published.
 *
 * A work command names what it passes with `envallow` (receptor's work-command has no such key; an
 * agent-only addition): names, or prefixes ending in `*`. Its list is added to DEFAULT_ALLOW. Whatever
 * a list says, `MESH_*` (the agent's settings: token, work dir, credential path) and any variable
 * whose value holds one of the agent's secrets are never passed.
 */

/** Enough for a shell, Python, ansible-runner and podman (rootless podman needs XDG_RUNTIME_DIR). */
export const DEFAULT_ALLOW: readonly string[] = [
  "PATH",
  "HOME",
  "LANG",
  "LANGUAGE",
  "LC_*",
  "TZ",
  "USER",
  "LOGNAME",
  "SHELL",
  "TERM",
  "TMPDIR",
  "ANSIBLE_*",
  "RUNNER_*",
  "XDG_RUNTIME_DIR",
  "XDG_CONFIG_HOME",
  "XDG_DATA_HOME",
  "CONTAINERS_*",
];

/** Never passed, whatever a work command's list says. */
const NEVER = /^MESH_/;

export function allowed(name: string, allow: readonly string[]): boolean {
  return allow.some((pattern) => (pattern.endsWith("*") ? name.startsWith(pattern.slice(0, -1)) : name === pattern));
}

/**
 * The unit's environment, from the agent's `source`. `secrets` are the agent's token and credential:
 * a variable holding one is dropped even if its name is allowed (`ANSIBLE_X=$MESH_TOKEN`).
 */
export function unitEnvironment(
  source: Readonly<Record<string, string | undefined>>,
  extraAllow: readonly string[],
  secrets: readonly string[],
): Record<string, string> {
  const allow = [...DEFAULT_ALLOW, ...extraAllow];
  const hidden = secrets.filter((s) => s.length >= 8);
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(source)) {
    if (value === undefined || NEVER.test(name) || !allowed(name, allow)) continue;
    if (hidden.some((secret) => value.includes(secret))) continue;
    env[name] = value;
  }
  return env;
}
