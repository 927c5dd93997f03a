/** Worker entry: the HTTP app and the Durable Object classes. */
import { app } from "./app.js";

export { AccessObject } from "./access/object.js";
export { MeshObject } from "./mesh/object.js";
export { UnitObject } from "./unit/object.js";

export default app;
