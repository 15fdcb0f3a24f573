import type { ServerHttp2Stream } from "node:http2";
import { constants } from "node:http2";
import { ConnectError } from "@connectrpc/connect";
import type { FastifyInstance } from "fastify";
import { decodeGrpcMessage, encodeGrpcMessage, readGrpcTimeout, statusFields } from "../../grpc/wire.js";
import type { EtcdLine } from "../../upstream/etcd-http.js";

/**
 * Where Connect's handler speaks native gRPC (the Connect lane) other than
 * etcd's grpc-go does, the wire is put right before or after it:
 *
 * - Connect writes `grpc-message` with encodeURIComponent, which also
 *   escapes ':' and '/'. grpc-go decodes that fine, but grpc-js (and so the
 *   etcd3 npm client) decodes with decodeURI and would show
 *   "etcdserver%3A ...". The message is re-encoded the way gRPC specifies,
 *   so every client reads etcd's text exactly.
 * - A grpc-timeout grpc-go cannot read gets grpc-go's refusal, as in the
 *   native lane (etcd 3.5: HTTP 400, Internal, its words; etcd 3.4: a
 *   PROTOCOL_ERROR reset), not Connect's InvalidArgument.
 */
export function registerNativeGrpcWire(app: FastifyInstance, etcdLine: () => EtcdLine): void {
  app.addHook("onRequest", (req, reply, done) => {
    const type = req.headers["content-type"];
    if (type === undefined || !type.startsWith("application/grpc") || type.startsWith("application/grpc-web")) {
      return done();
    }
    const timeout = req.headers["grpc-timeout"];
    const refused = readGrpcTimeout(typeof timeout === "string" ? timeout : undefined);
    const stream = (req.raw as { stream?: ServerHttp2Stream }).stream;
    if (refused instanceof ConnectError && stream) {
      reply.hijack();
      if (etcdLine() === "3.4") stream.close(constants.NGHTTP2_PROTOCOL_ERROR);
      else {
        stream.respond(
          {
            ":status": 400,
            "content-type": "application/grpc",
            ...Object.fromEntries(statusFields(refused)),
          },
          { endStream: true },
        );
      }
      return;
    }
    const res = reply.raw;
    const addTrailers = res.addTrailers.bind(res);
    res.addTrailers = (trailers) => {
      const t = trailers as Record<string, string>;
      const message = t["grpc-message"];
      if (message !== undefined) t["grpc-message"] = encodeGrpcMessage(decodeGrpcMessage(message));
      addTrailers(t);
    };
    done();
  });
}
