import type { FastifyInstance } from "fastify";
import { decodeGrpcMessage, encodeGrpcMessage } from "../grpc/wire.js";

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
        if (message !== undefined) t["grpc-message"] = encodeGrpcMessage(decodeGrpcMessage(message));
        addTrailers(t);
      };
    }
    done();
  });
}
