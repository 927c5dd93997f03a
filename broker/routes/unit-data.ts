/** What a unit produced: raw results, its events, its artifacts tar. */
import { MeshError } from "../../shared/errors.js";
import { may } from "../auth.js";
import { unitObject } from "../stubs.js";
import { type App, asResult, can, feedQuery, meshName, unitId } from "./context.js";
import { forward, whileAuthorized } from "./follow.js";

export function unitDataRoutes(app: App): void {
  /**
   * Raw results, byte for byte as the command wrote them: what meshctl, the receptor bridge and
   * `ansible-runner process` read. Not for read tokens: masking would change the bytes and their
   * offsets, which resumes and `ansible-runner process` depend on, and it could only mask what it
   * recognises (ansible-runner's `starting` environment). Readers get events and artifacts, masked.
   */
  app.get("/v1/meshes/:mesh/units/:id/results", async (c) => {
    const mesh = meshName(c);
    const id = unitId(c);
    can(c, "results");
    const raw = c.req.query("offset") ?? "0";
    if (!/^\d{1,15}$/.test(raw)) throw new MeshError("bad_offset", "offset must be a non-negative integer");
    const follow = c.req.query("follow") === "1" || c.req.query("follow") === "true";
    const response = asResult<Response>(await unitObject(c.env, mesh, id).results(Number(raw), { follow }));
    return follow ? whileAuthorized(c, response) : forward(response);
  });

  /**
   * The unit's events (SSE with `Accept: text/event-stream`, else JSON pages). Readers that may not
   * submit get ansible-runner's `starting` environment masked: a submitter can run commands on the
   * nodes anyway, a read token is for watching.
   */
  app.get("/v1/meshes/:mesh/units/:id/events", async (c) => {
    const mesh = meshName(c);
    const id = unitId(c);
    can(c, "read");
    const query = feedQuery(c, { latest: false });
    const redact = !may(c.get("principal"), "submit");
    return whileAuthorized(c, asResult<Response>(await unitObject(c.env, mesh, id).events(query, { redact })));
  });

  /**
   * The unit's artifacts as a tar, as `ansible-runner process` would write them (unit/artifacts.ts).
   * As with events, readers that may not submit get the environment in `command` masked.
   */
  app.get("/v1/meshes/:mesh/units/:id/artifacts", async (c) => {
    const mesh = meshName(c);
    const id = unitId(c);
    can(c, "read");
    const redact = !may(c.get("principal"), "submit");
    return forward(asResult<Response>(await unitObject(c.env, mesh, id).artifacts({ redact })));
  });
}
