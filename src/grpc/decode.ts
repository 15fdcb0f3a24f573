import { fromBinary, type DescMethod, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Decodes a request message. etcd (grpc-go) answers an undecodable one with
 * Internal, worded one way for a unary call and another for a stream's
 * message.
 */
export function decodeRequest<M extends DescMethod>(method: M, bytes: Uint8Array): MessageShape<M["input"]> {
  try {
    return fromBinary(method.input, bytes) as MessageShape<M["input"]>;
  } catch (err) {
    const what =
      method.methodKind === "unary"
        ? "grpc: error unmarshalling request: "
        : "grpc: failed to unmarshal the received message ";
    throw new ConnectError(what + (err as Error).message, Code.Internal);
  }
}
