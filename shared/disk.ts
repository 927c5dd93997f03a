/**
 * Free space on a node's work dir, as its agent reports it (hello, then `disk` messages), and what
 * it means: below the node's own threshold (`mesh-agent --min-free`) the node takes no new units,
 * so they go to another node or wait, rather than fail on a full disk. Pure, for the broker (which
 * passes such a node over in dispatch and says why in status), the agent and meshctl alike.
 */
export interface DiskSpace {
  /** Bytes an unprivileged writer may still use (statfs f_bavail × f_bsize, df's "Avail"). */
  freeBytes: number;
  /** The agent's --min-free. */
  minFreeBytes: number;
}

/**
 * The agent's default --min-free. A unit's spool holds its payload (up to the broker's
 * MAX_PAYLOAD_BYTES, 100 MiB by default) and its results; ansible-runner unpacks the payload once
 * more into its private data dir. 256 MiB lets the largest payload the broker accepts land and
 * unpack with room for its output, and is still a small part of any disk a node runs on (1% of a
 * 25 GB VM disk), so it idles no healthy node.
 */
export const DEFAULT_MIN_FREE_BYTES = 256 * 1024 * 1024;

export function isLowDisk(disk: DiskSpace | null | undefined): boolean {
  return disk != null && disk.freeBytes < disk.minFreeBytes;
}

/** Why the node takes no units ("low disk: 12 MiB free < 256 MiB"), or null when it takes them. */
export function lowDiskReason(disk: DiskSpace | null | undefined): string | null {
  if (!disk || !isLowDisk(disk)) return null;
  return `low disk: ${formatBytes(disk.freeBytes)} free < ${formatBytes(disk.minFreeBytes)}`;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"] as const;

/** In binary units, with one decimal below 10 of a unit: "0 B", "1.5 GiB", "12 MiB". */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const text = unit === 0 || value >= 10 ? String(Math.floor(value)) : (Math.floor(value * 10) / 10).toString();
  return `${text} ${UNITS[unit]}`;
}

/** `--min-free` and MESH_MIN_FREE: bytes, or a number with K, M, G, T (binary: KiB, MiB…; KB, MB… are decimal). */
export function parseBytes(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (!match) return null;
  const [, number, prefix = "", suffix = ""] = match;
  const power = prefix === "" ? 0 : "KMGT".indexOf(prefix.toUpperCase()) + 1;
  const decimal = prefix !== "" && suffix.toUpperCase() === "B";
  const bytes = Number(number) * (decimal ? 1000 : 1024) ** power;
  return Number.isSafeInteger(Math.round(bytes)) ? Math.round(bytes) : null;
}
