// @ts-check
/**
 * The dashboard's entry: sign-in, the header, and hash routing between the overview (`#/`) and a
 * unit's page (`#/units/ID`). Each view owns its streams and timers and gives them up on dispose.
 */
import { Api, ApiError } from "./api.js";
import { el } from "./dom.js";
import { loginView } from "./login.js";
import { overviewView } from "./overview.js";
import { clearSession, loadSession, saveSession } from "./session.js";
import { unitView } from "./unit.js";

/** @typedef {import("./api.js").Whoami} Whoami */

const root = /** @type {HTMLElement} */ (document.getElementById("app"));
/** @type {{ element: HTMLElement, dispose(): void } | null} */
let view = null;

/** @param {string} [message] */
function showLogin(message) {
  view?.dispose();
  view = null;
  window.onhashchange = null;
  root.replaceChildren(
    loginView((api, whoami) => {
      saveSession({ mesh: api.mesh, token: api.token });
      showDashboard(api, whoami);
    }, message),
  );
}

/**
 * @param {Api} api
 * @param {Whoami} whoami
 */
function showDashboard(api, whoami) {
  const main = el("main");
  const logout = el("button", { type: "button", class: "logout" }, "Log out");
  logout.addEventListener("click", () => {
    clearSession();
    showLogin();
  });
  const who = `${whoami.role ?? whoami.kind}${whoami.tokenId ? ` · ${whoami.tokenId}` : ""}`;
  root.replaceChildren(
    el(
      "header",
      {},
      el("a", { class: "brand", href: "#/" }, "mesh-agent"),
      el("span", { class: "mesh" }, "mesh ", el("b", {}, api.mesh)),
      el("span", { class: "who" }, who),
      logout,
    ),
    main,
  );
  const route = () => {
    view?.dispose();
    const unit = /^#\/units\/([0-9A-Za-z]{8})$/.exec(location.hash);
    view = unit ? unitView(api, whoami, unit[1] ?? "") : overviewView(api, whoami);
    main.replaceChildren(view.element);
    window.scrollTo(0, 0);
  };
  window.onhashchange = route;
  route();
}

// A revoked token ends the session: the streams end within seconds, their reconnect is answered 401.
addEventListener("mesh:unauthorized", () => {
  if (!loadSession()) return;
  clearSession();
  showLogin("your token was revoked or is no longer valid; sign in again");
});

async function start() {
  const session = loadSession();
  if (!session) return showLogin();
  const api = new Api(session.mesh, session.token);
  try {
    showDashboard(api, await api.whoami());
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) clearSession();
    showLogin(e instanceof Error ? e.message : String(e));
  }
}

start();
