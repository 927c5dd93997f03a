/**
 * Shapes of the broker's HTTP API answers that are not units (shared/unit.ts holds those): the
 * broker builds them, meshctl reads them. Types only, so the broker and the CLIs share one truth.
 */
import type { Role } from "./roles.js";

/** A token as the API shows it; `token` (the secret) appears only in the answer to create. */
export interface TokenInfo {
  id: string;
  name: string;
  role: Role;
  createdAt: string;
  revokedAt: string | null;
}
