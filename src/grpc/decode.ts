import { fromBinary, type DescMethod, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";

/** Decodes a request message; etcd (grpc-go) answers an undecodable one with Internal. */
export function decodeRequest<M extends DescMethod>(method: M, bytes: Uint8Array): MessageShape<M["input"]> {
  try {
    return fromBinary(method.input, bytes) as MessageShape<M["input"]>;
  } catch (err) {
    throw new ConnectError(`grpc: error unmarshalling request: ${(err as Error).message}`, Code.Internal);
  }
}
