// @ts-check
/** The sign-in form: a mesh id and a token of role read or higher, checked with whoami. */
import { Api } from "./api.js";
import { el } from "./dom.js";

/** @typedef {import("./api.js").Whoami} Whoami */

/**
 * @param {(api: Api, whoami: Whoami) => void} onLogin
 * @param {string} [message]  why the form is shown again (an expired or revoked token)
 * @returns {HTMLElement}
 */
export function loginView(onLogin, message) {
  const mesh = el("input", {
    id: "login-mesh",
    name: "mesh",
    value: "default",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
  });
  const token = el("input", {
    id: "login-token",
    name: "token",
    type: "password",
    required: true,
    autocomplete: "off",
    placeholder: "mtk_…",
  });
  const error = el("p", { class: "error", role: "alert" }, message ?? "");
  const button = el("button", { type: "submit" }, "Sign in");
  const form = el(
    "form",
    { class: "login" },
    el("h1", {}, "mesh-agent"),
    el("label", { for: "login-mesh" }, "Mesh"),
    mesh,
    el("label", { for: "login-token" }, "Token (role read or higher)"),
    token,
    button,
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    error.textContent = "";
    const api = new Api(mesh.value.trim(), token.value.trim());
    try {
      const whoami = await api.whoami();
      if (!whoami.may.read)
        throw new Error("this token may not read the mesh (use a token of role read, submit or admin)");
      onLogin(api, whoami);
    } catch (e) {
      error.textContent = e instanceof Error ? e.message : String(e);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
