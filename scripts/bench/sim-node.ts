/**
 * A simulated idle agent for the connection benchmark: just the control socket of shared/protocol.ts.
 * It joins with the join token, keeps the credential the welcome carries, and reconnects with it
 * using the agent's own reconnect delay whenever the socket closes, as a real agent does.
 */
import { WebSocket } from "undici";
import { CONTROL_RECONNECT, reconnectDelay, sleep } from "../../shared/backoff.js";
import { PROTOCOL_VERSION, decodeBrokerControl, encode } from "../../shared/protocol.js";

export class SimNode {
  private ws: WebSocket | null = null;
  private credential: string | null = null;
  private stopped = false;
  /** Welcomes received so far: one per successful (re)connect. */
  welcomes = 0;
  /** When the latest welcome came (ms): hellos admitted per second, from the outside. */
  welcomedAt = 0;

  constructor(
    private readonly wsUrl: string,
    private readonly joinToken: string,
    readonly nodeId: string,
  ) {}

  /** Connects and keeps reconnecting until stop(). */
  async run(): Promise<void> {
    let downSince: number | null = null;
    while (!this.stopped) {
      const opened = await this.connect();
      // As agent.ts: the delay grows with the time since the link was lost (or first failed).
      if (opened || downSince === null) downSince = Date.now();
      if (!this.stopped) await sleep(reconnectDelay(Date.now() - downSince, CONTROL_RECONNECT));
    }
  }

  private connect(): Promise<boolean> {
    return new Promise((resolve) => {
      let opened = false;
      const ws = new WebSocket(this.wsUrl, {
        headers: { authorization: `Bearer ${this.credential ?? this.joinToken}` },
      });
      this.ws = ws;
      ws.addEventListener("open", () => {
        opened = true;
        ws.send(
          encode({
            type: "hello",
            protocol: PROTOCOL_VERSION,
            nodeId: this.nodeId,
            workTypes: [{ worktype: "idle", verifySignature: false, allowRuntimeParams: false }],
            capacity: 1,
            tags: {},
            versions: {
              agent: "bench-sim",
              node: process.version,
              ansibleRunner: null,
              podman: null,
              podmanUsable: false,
            },
            units: [],
          }),
        );
      });
      ws.addEventListener("message", (event) => {
        const decoded = decodeBrokerControl(String(event.data));
        if (!decoded.ok || decoded.value.type !== "welcome") return;
        if (decoded.value.credential) this.credential = decoded.value.credential;
        this.welcomes++;
        this.welcomedAt = Date.now();
      });
      ws.addEventListener("error", () => undefined);
      ws.addEventListener("close", () => resolve(opened));
    });
  }

  stop(): void {
    this.stopped = true;
    this.ws?.close();
  }
}
