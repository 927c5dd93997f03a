/** Submitting a unit and following its results over the HTTP API, timed from the client's side. */
import { request } from "undici";
import type { UnitRecord } from "../../shared/unit.js";
import type { BenchEnv } from "./env.js";

/** Wall-clock milliseconds with sub-millisecond precision, comparable with other processes' clocks. */
export const now = () => performance.timeOrigin + performance.now();

export async function submit(
  env: BenchEnv,
  mesh: string,
  worktype: string,
  params: Record<string, string> = {},
): Promise<string> {
  const query = new URLSearchParams({
    worktype,
    ...Object.fromEntries(Object.entries(params).map(([k, v]) => [`param.${k}`, v])),
  });
  const response = await request(`${env.broker.url}/v1/meshes/${mesh}/units?${query}`, {
    method: "POST",
    headers: { ...env.auth(), "content-length": "0" },
    body: "",
  });
  const body = (await response.body.json()) as UnitRecord & { error?: { message: string } };
  if (response.statusCode !== 201)
    throw new Error(`submit ${worktype}: HTTP ${response.statusCode}: ${body.error?.message}`);
  return body.id;
}

export interface Followed {
  bytes: number;
  firstByteAt: number | null;
  firstChunk: string;
}

/** Reads a unit's results until the unit is final (follow=1), counting bytes, keeping none. */
export async function follow(env: BenchEnv, mesh: string, id: string): Promise<Followed> {
  const response = await request(`${env.broker.url}/v1/meshes/${mesh}/units/${id}/results?follow=1`, {
    headers: env.auth(),
    bodyTimeout: 120_000,
  });
  if (response.statusCode !== 200)
    throw new Error(`results of ${id}: HTTP ${response.statusCode}: ${await response.body.text()}`);
  const got: Followed = { bytes: 0, firstByteAt: null, firstChunk: "" };
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    if (got.firstByteAt === null) {
      got.firstByteAt = now();
      got.firstChunk = chunk.subarray(0, 64).toString();
    }
    got.bytes += chunk.byteLength;
  }
  return got;
}

export async function unitState(env: BenchEnv, mesh: string, id: string): Promise<UnitRecord> {
  const response = await request(`${env.broker.url}/v1/meshes/${mesh}/units/${id}`, { headers: env.auth() });
  return (await response.body.json()) as UnitRecord;
}
