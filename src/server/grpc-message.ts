import type { FastifyInstance } from "fastify";

/**
 * gRPC's percent-encoding of `grpc-message`: only bytes outside printable
 * ASCII, and '%' itself, are escaped (PROTOCOL-HTTP2.md, "Responses").
 */
export function encodeGrpcMessage(message: string): string {
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * Connect writes `grpc-message` with encodeURIComponent, which also escapes
 * ':' and '/'. grpc-go decodes that fine, but grpc-js (and so the etcd3 npm
 * client) decodes with decodeURI and would show "etcdserver%3A ...". Native
 * gRPC responses therefore get their message re-encoded the way gRPC
 * specifies, so every client reads etcd's text exactly.
 */
export function registerGrpcMessageEncoding(app: FastifyInstance): void {
  app.addHook("onRequest", (req, reply, done) => {
    const type = req.headers["content-type"];
    if (type !== undefined && type.startsWith("application/grpc") && !type.startsWith("application/grpc-web")) {
      const res = reply.raw;
      const addTrailers = res.addTrailers.bind(res);
      res.addTrailers = (trailers) => {
        const t = trailers as Record<string, string>;
        const message = t["grpc-message"];
        if (message !== undefined) t["grpc-message"] = encodeGrpcMessage(safeDecode(message));
        addTrailers(t);
      };
    }
    done();
  });
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
