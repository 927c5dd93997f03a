// @ts-check
/** The signed-in mesh and token, kept for the browser tab only (sessionStorage). */

const KEY = "mesh-dashboard-session";

/** @typedef {{ mesh: string, token: string }} Session */

/** @returns {Session | null} */
export function loadSession() {
  try {
    const value = JSON.parse(sessionStorage.getItem(KEY) ?? "null");
    if (typeof value?.mesh === "string" && typeof value?.token === "string")
      return { mesh: value.mesh, token: value.token };
  } catch {
    // Unreadable: sign in again.
  }
  return null;
}

/** @param {Session} session */
export function saveSession(session) {
  sessionStorage.setItem(KEY, JSON.stringify(session));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}
