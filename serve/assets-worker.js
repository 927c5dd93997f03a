// The dashboard's static files for `mesh-broker serve`: the Worker behind the broker's ASSETS
// binding, answering from the files the build embedded (dashboard.js), as Cloudflare's assets
// answer a deployed broker (`/` is index.html; anything else not held is a 404 the broker turns
// into its own JSON 404). Copied next to the bundle by scripts/build-broker.ts.
import files from "./dashboard.js";

export default {
  /** @param {Request} request */
  async fetch(request) {
    const url = new URL(request.url);
    const path = url.pathname.endsWith("/") ? `${url.pathname}index.html` : url.pathname;
    const file = Object.hasOwn(files, path) ? files[path] : undefined;
    if (!file || (request.method !== "GET" && request.method !== "HEAD")) return new Response(null, { status: 404 });
    const headers = { "content-type": file.type, etag: file.etag, "cache-control": "public, max-age=0, must-revalidate" };
    if (request.headers.get("if-none-match") === file.etag) return new Response(null, { status: 304, headers });
    return new Response(request.method === "HEAD" ? null : file.body, { headers });
  },
};
