/**
 * Runs after each test file's own afterAll (hooks run as a stack, and this file's are registered
 * first): the in-process broker logs as it handles the sockets a file closed at its end, and a log
 * that reaches vitest while it is tearing the file's environment down fails the whole run
 * ("Closing rpc while onUserConsoleLog was pending"). A moment lets those handlers finish first.
 */
import { afterAll } from "vitest";

afterAll(() => new Promise((resolve) => setTimeout(resolve, 500)));
