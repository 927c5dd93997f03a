import { describe, expect, it } from "vitest";
import { NAME_PATTERN, UNIT_ID_PATTERN, newUnitId } from "../../shared/ids.js";

describe("newUnitId", () => {
  it("makes 8 characters of [0-9a-zA-Z]", () => {
    for (let i = 0; i < 200; i++) {
      const id = newUnitId();
      expect(id).toHaveLength(8);
      expect(id).toMatch(UNIT_ID_PATTERN);
    }
  });

  it("1000 ids are distinct", () => {
    const ids = Array.from({ length: 1000 }, () => newUnitId());
    expect(new Set(ids).size).toBe(1000);
    for (const id of ids) expect(id).toMatch(UNIT_ID_PATTERN);
  });

  it("uses the whole alphabet over many ids", () => {
    const seen = new Set(Array.from({ length: 2000 }, () => newUnitId()).join(""));
    // 16000 draws from 62 symbols: every symbol appears with overwhelming probability.
    expect(seen.size).toBe(62);
  });
});

describe("UNIT_ID_PATTERN", () => {
  it.each(["abcdefgh", "ABCDEFGH", "01234567", "aB3dE6gH"])("accepts %s", (id) => {
    expect(UNIT_ID_PATTERN.test(id)).toBe(true);
  });
  it.each(["", "abcdefg", "abcdefghi", "abcd-fgh", "abcd fgh", "abcdéfgh", "../abcde", "abcdefgh\n"])(
    "rejects %j",
    (id) => {
      expect(UNIT_ID_PATTERN.test(id)).toBe(false);
    },
  );
});

describe("NAME_PATTERN", () => {
  it.each(["a", "A", "0", "node-1", "node_1", "node.example.com", "execution", "a".repeat(64), "9-._"])(
    "accepts %j",
    (name) => {
      expect(NAME_PATTERN.test(name)).toBe(true);
    },
  );
  it.each([
    "",
    "a".repeat(65),
    "-node",
    ".node",
    "_node",
    "../x",
    "..",
    "a/b",
    "a b",
    "a:b",
    "a@b",
    "nöde",
    "node\n",
    "a%2Fb",
  ])("rejects %j", (name) => {
    expect(NAME_PATTERN.test(name)).toBe(false);
  });
});
