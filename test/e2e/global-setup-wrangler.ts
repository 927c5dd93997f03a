/** The e2e-wrangler project's broker: `wrangler dev`, as `npm run dev` runs it. */
import { setupOn } from "./global-setup.js";

export default setupOn("wrangler");
