/**
 * Lets a service hand the native gRPC lane a message whose wire bytes it can
 * produce more cheaply than a generic serializer: a watch event fanned out
 * to ten thousand watchers differs only in its watch ID, so its body is
 * encoded once and each copy only gets its own ID in front. Other lanes
 * ignore the hook and serialize the message as usual.
 */
const FRAME_ENCODER = Symbol("frameEncoder");

export interface FrameEncoder<M> {
  /**
   * The complete gRPC frame (5-byte prefix and payload) of `message`, as
   * one buffer or as pieces to send in order: a large body shared by many
   * receivers is sent as it is, not copied into each receiver's frame.
   */
  frame(message: M): Uint8Array | readonly Uint8Array[];
}

export function withFrameEncoder<M extends object>(message: M, encoder: FrameEncoder<M>): M {
  (message as Record<symbol, unknown>)[FRAME_ENCODER] = encoder;
  return message;
}

/** The frame of `message` if its producer attached an encoder, else undefined. */
export function preEncodedFrame(message: unknown): Uint8Array | readonly Uint8Array[] | undefined {
  const encoder = (message as Record<symbol, FrameEncoder<unknown> | undefined>)[FRAME_ENCODER];
  return encoder?.frame(message);
}
