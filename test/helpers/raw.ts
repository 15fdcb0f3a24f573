import * as http2 from "node:http2";
import { connect } from "node:net";

export interface RawGrpcResponse {
  status: number;
  /** grpc-status from the trailers, or from the headers of a Trailers-Only answer. */
  grpcStatus: number | undefined;
  grpcMessage: string | undefined;
  body: Buffer;
}

/** A length-prefixed gRPC message: flag byte, 4-byte big-endian length, payload. */
export function envelope(payload: Buffer, declaredLength = payload.length, flags = 0): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(declaredLength, 1);
  return Buffer.concat([head, payload]);
}

/** Sends exactly `body` as a gRPC request over h2c, with no client-side checks. */
export function rawGrpc(
  address: string,
  path: string,
  body: Buffer,
  headers: http2.OutgoingHttpHeaders = {},
): Promise<RawGrpcResponse> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${address}`);
    session.on("error", reject);
    const req = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    let status = 0;
    let grpcStatus: number | undefined;
    let grpcMessage: string | undefined;
    const chunks: Buffer[] = [];
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) grpcStatus = Number(h["grpc-status"]);
      if (h["grpc-message"] !== undefined) grpcMessage = decodeURIComponent(String(h["grpc-message"]));
    };
    req.on("response", (h) => {
      status = Number(h[":status"]);
      take(h);
    });
    req.on("trailers", take);
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", reject);
    req.on("close", () => {
      session.close();
      resolve({ status, grpcStatus, grpcMessage, body: Buffer.concat(chunks) });
    });
    req.end(body);
  });
}

/** Writes raw bytes to a TCP port and collects whatever comes back until close. */
export function rawTcp(address: string, bytes: Buffer, timeoutMs = 3000): Promise<string> {
  const [host, port] = address.split(":");
  return new Promise((resolve) => {
    const socket = connect(Number(port), host!, () => socket.write(bytes));
    let out = "";
    socket.on("data", (d) => (out += d.toString("latin1")));
    const done = () => resolve(out);
    socket.on("close", done);
    socket.on("error", done);
    socket.setTimeout(timeoutMs, () => socket.destroy());
  });
}
