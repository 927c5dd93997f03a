/**
 * Process figures read from /proc, so that the broker (workerd) and the agent are measured from the
 * outside, as an operator would see them, without instrumenting either.
 */
import { readFileSync, readdirSync } from "node:fs";

const TICKS_PER_SECOND = 100;

function stat(pid: number): { comm: string; ppid: number; cpuTicks: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm may hold spaces and parentheses: the fields after it start at the last ")".
    const end = text.lastIndexOf(")");
    const fields = text.slice(end + 2).split(" ");
    return {
      comm: text.slice(text.indexOf("(") + 1, end),
      ppid: Number(fields[1]),
      cpuTicks: Number(fields[11]) + Number(fields[12]),
    };
  } catch {
    return null;
  }
}

export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const info = stat(pid);
    if (info) children.set(info.ppid, [...(children.get(info.ppid) ?? []), pid]);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    for (const child of children.get(pid) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

/** The workerd processes wrangler started (wrangler itself is Node and not the broker). */
export function workerdPids(wranglerPid: number): number[] {
  const pids = descendants(wranglerPid).filter((p) => stat(p)?.comm === "workerd");
  if (pids.length === 0) throw new Error(`no workerd process under wrangler (pid ${wranglerPid})`);
  return pids;
}

/** utime + stime of the processes and their descendants, in seconds. */
export function cpuSeconds(pids: number[]): number {
  const all = new Set(pids.flatMap((pid) => [pid, ...descendants(pid)]));
  return [...all].reduce((sum, p) => sum + (stat(p)?.cpuTicks ?? 0), 0) / TICKS_PER_SECOND;
}

/** Open file descriptors of the processes. */
export function openFiles(pids: number[]): number {
  return pids.reduce((sum, pid) => {
    try {
      return sum + readdirSync(`/proc/${pid}/fd`).length;
    } catch {
      return sum;
    }
  }, 0);
}

/** The soft limit on open files of a process ("Max open files" in /proc/<pid>/limits). */
export function openFileLimit(pid: number): number {
  const match = /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, "utf8"));
  return match ? Number(match[1]) : Number.POSITIVE_INFINITY;
}

/** Summed VmRSS of the processes in MiB, or null once they are gone. */
export function totalRssMiB(pids: number[]): number | null {
  const each = pids.map(rssMiB).filter((r) => r !== null);
  return each.length === 0 ? null : each.reduce((a, b) => a + b, 0);
}

/** VmRSS in MiB, or null once the process is gone. */
export function rssMiB(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Private_Clean + Private_Dirty in MiB (/proc/<pid>/smaps_rollup): what the process alone holds.
 * VmRSS also counts the pages of the node binary and libraries it shares with every other Node.
 */
export function privateMiB(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const kib = [...text.matchAll(/^Private_(?:Clean|Dirty):\s+(\d+) kB/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    return kib / 1024;
  } catch {
    return null;
  }
}

/** Samples VmRSS every `everyMs` until stopped; answers the peak. */
export function rssSampler(pid: number, everyMs = 50): { stop(): number } {
  let peak = rssMiB(pid) ?? 0;
  const timer = setInterval(() => (peak = Math.max(peak, rssMiB(pid) ?? 0)), everyMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, rssMiB(pid) ?? 0);
    },
  };
}
