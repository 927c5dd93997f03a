import { describe, expect, it } from "vitest";
import { redactParams } from "../../broker/unit/redact.js";

describe("secret_* params in status records", () => {
  it.each([
    ["secret_kube_config", true],
    ["Secret_Up", true], // receptor compares lowercased: any case is a secret
    ["SECRET_ALL", true],
    ["secret_", true],
    ["secretive", false],
    ["my_secret_x", false],
    ["params", false],
  ])("%s masked: %s", (name, masked) => {
    expect(redactParams({ [name]: "v4lue" })[name]).toBe(masked ? "********" : "v4lue");
  });
});
