/** The bootstrap admin token of the in-process Worker: vitest.config.ts gives it as ADMIN_TOKEN, the tests present it. */
export const ADMIN = "mtk_workers-test-admin-token-000000000000000000";
