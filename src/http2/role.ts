import { H2_LIMITS } from "./limits.js";

/**
 * What a connection's role decides. The server role accepts connections
 * from clients the proxy does not control and defends against them: control
 * answers are capped, reading stops while the peer does not read, output
 * for unread streams is bounded, closed streams are remembered, and the
 * handshake has a deadline. The client role dials etcd, which it trusts.
 */
export interface RolePolicy {
  /** The peer opens the connection with the client preface. */
  readonly accepts: boolean;
  readonly defends: boolean;
  /** SETTINGS_INITIAL_WINDOW_SIZE this side gives each stream. */
  readonly streamWindow: number;
}

export const SERVER_ROLE: RolePolicy = { accepts: true, defends: true, streamWindow: H2_LIMITS.streamWindow };
export const CLIENT_ROLE: RolePolicy = { accepts: false, defends: false, streamWindow: H2_LIMITS.upstreamStreamWindow };
