/**
 * A Unit object makes its tables with the unit, in the same commit, not in its constructor: on
 * workerd every commit is an fsync on the thread that runs all the objects, and a unit is made on
 * the way to its first result byte (broker/unit/store.ts). Reading an object nobody made a unit in
 * writes nothing.
 */
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { UnitRecord } from "../../shared/unit.js";
import { ADMIN, api, joinNode, newMesh } from "./harness.js";

const mesh = newMesh();
const tables = (id: string) =>
  runInDurableObject(env.UNIT.get(env.UNIT.idFromName(`${mesh}/${id}`)), (_object, state) =>
    state.storage.sql
      .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .toArray()
      .map((row) => row.name)
      .filter((name) => !name.startsWith("_cf_")),
  );

describe("Unit object tables", () => {
  it("an unknown unit's object, read, stays empty; a unit made in one has its tables", async () => {
    expect((await api(mesh, "GET", "/units/Zz9Yy8Xx")).status).toBe(404);
    expect(await tables("Zz9Yy8Xx")).toEqual([]);

    const { socket } = await joinNode({ token: ADMIN, mesh }, "tables", ["sh"], 1);
    const created = await api<UnitRecord>(mesh, "POST", "/units?worktype=sh", { body: "echo hi" });
    expect(created.status).toBe(201);
    expect(await tables(created.body.id)).toEqual(["chunks", "events", "unit"]);
    expect((await api<UnitRecord>(mesh, "GET", `/units/${created.body.id}`)).body).toMatchObject({
      id: created.body.id,
      payloadSize: 7,
    });
    socket.close();
  });
});
