/**
 * What the proxy's HTTP/2 connections and streams share: the bounds kept
 * against a peer, and the names of a stream's states.
 */
import type { ErrorCode } from "./frames.js";

/**
 * Every bound the proxy's HTTP/2 keeps against a peer, in one place (the
 * README's security section lists them). The receive windows are large, so
 * a fast client is never slowed, but they are credited as data is consumed,
 * not as it arrives: what a peer can make the proxy hold is the window.
 */
export const H2_LIMITS = {
  /** SETTINGS_HEADER_TABLE_SIZE: the peer's HPACK dynamic table. */
  headerTableSize: 4096,
  /** SETTINGS_INITIAL_WINDOW_SIZE toward clients: unconsumed bytes one stream may send. */
  streamWindow: 1 << 20,
  /**
   * The same toward etcd, at first: what an answer may bring before its
   * client's gate admits it (see AnswerGate), so small that calls of a
   * client that does not read hold little. An answer that outgrows it gets
   * a window twice as large, up to streamWindow, as far as the gate admits
   * the growth in advance.
   */
  upstreamStreamWindow: 16 << 10,
  /** The connection's receive window: unconsumed bytes all streams together may send. */
  connectionWindow: 16 << 20,
  /** SETTINGS_MAX_HEADER_LIST_SIZE: a decoded header block, RFC 7541 sizes (grpc-go answers more with RST_STREAM). */
  maxHeaderListSize: 64 << 10,
  /** Encoded bytes of one header block, HEADERS and CONTINUATIONs together. */
  maxHeaderBlockBytes: 128 << 10,
  /** Frames of one header block: empty CONTINUATIONs cost the peer nothing, and bytes alone do not count them. */
  maxHeaderBlockFrames: 32,
  /** Control frames (ACKs, RST_STREAMs, WINDOW_UPDATEs) queued while a peer does not read, before GOAWAY. */
  maxQueuedControlFrames: 10_000,
  /**
   * Response bytes a connection may hold for streams the peer does not
   * read (their windows are shut), each stalled stream costing
   * `stalledStreamCost` more. Past it, new streams are refused and the
   * largest stalled ones reset; one stream alone may always exceed it.
   */
  maxStalledBytes: 32 << 20,
  stalledStreamCost: 4 << 10,
  /**
   * Answers from etcd a client may have unread, admitted and queued
   * together (see AnswerGate); past it they wait in etcd. One answer
   * alone may always come in. Calls waiting so may hold half as much.
   */
  maxUnreadAnswers: 8 << 20,
  /** A server connection must send its preface and SETTINGS within this. */
  handshakeTimeoutMs: 5_000,
  /** The client's stream ids whose close is remembered, to tell late frames from protocol errors. */
  closedStreamMemory: 1024,
} as const;

/** A stream's write() asks the caller to wait once this much is queued on it. */
export const STREAM_HIGH_WATER = 64 * 1024;

export const EMPTY = Buffer.alloc(0);

export class ConnectionError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * How a stream the peer opened ended, remembered for a while: frames that
 * arrive later are a protocol error when the peer itself ended or reset the
 * stream, and are ignored when this side reset it (the peer may not know
 * yet, RFC 9113 §5.1 "closed").
 */
export type ClosedBy = "peer" | "local-reset";

/** RFC 9113 §5.1 for a stream this side knows (idle and reserved streams are never objects). */
export type StreamState = "open" | "half-closed (local)" | "half-closed (remote)" | "closed";
