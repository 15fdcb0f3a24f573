import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { repoPath } from "./repo.js";

/**
 * An etcd client built on @grpc/grpc-js, an implementation independent of
 * the proxy's Connect stack. Messages are plain objects with snake_case
 * fields, int64 as strings and bytes as Buffers.
 */
const definition = protoLoader.loadSync(
  ["etcd/api/etcdserverpb/rpc.proto", "etcd/api/v3lockpb/v3lock.proto", "etcd/api/v3electionpb/v3election.proto"],
  {
    includeDirs: [repoPath("build", "etcd-proto"), repoPath("proto")],
    keepCase: true,
    longs: String,
    defaults: true,
    oneofs: true,
  },
);
const loaded = grpc.loadPackageDefinition(definition) as Record<string, Record<string, grpc.ServiceClientConstructor>>;

export type ServiceName = "KV" | "Watch" | "Lease" | "Cluster" | "Maintenance" | "Auth";
type Plain = Record<string, unknown>;

export interface GrpcError extends Error {
  code: grpc.status;
  details: string;
}

/** Channel options without gRPC's 4 MiB limit on messages (etcd's answers may be larger). */
export const UNLIMITED: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": -1,
  "grpc.max_send_message_length": -1,
};

export class EtcdGrpcClient {
  private readonly clients = new Map<string, grpc.Client>();

  constructor(
    readonly endpoint: string,
    private readonly credentials = grpc.credentials.createInsecure(),
    private readonly channelOptions: grpc.ChannelOptions = {},
  ) {}

  client(service: string): grpc.Client {
    let c = this.clients.get(service);
    if (!c) {
      const [pkg, name] = service.includes(".") ? service.split(".") : ["etcdserverpb", service];
      const ctor = loaded[pkg!]![name!]!;
      c = new ctor(this.endpoint, this.credentials, this.channelOptions);
      this.clients.set(service, c);
    }
    return c;
  }

  /** A unary call; rejects with the gRPC status (code, details). A deadline of Infinity sends none. */
  unary(
    service: string,
    method: string,
    request: Plain,
    metadata = new grpc.Metadata(),
    deadlineMs = 10_000,
  ): Promise<Plain> {
    const c = this.client(service) as unknown as Record<string, Function>;
    return new Promise((resolve, reject) => {
      c[method]!.call(
        c,
        request,
        metadata,
        deadlineMs === Infinity ? {} : { deadline: Date.now() + deadlineMs },
        (err: GrpcError | null, res: Plain) => (err ? reject(err) : resolve(res)),
      );
    });
  }

  /** A bidi or server stream; returns grpc-js's call object. */
  stream(service: string, method: string, metadata = new grpc.Metadata()): grpc.ClientDuplexStream<Plain, Plain> {
    const c = this.client(service) as unknown as Record<string, Function>;
    return c[method]!.call(c, metadata) as grpc.ClientDuplexStream<Plain, Plain>;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
  }
}

/** Calls and returns `{code, details}` for a failure, or `{code: 0}` for success. */
export async function outcome(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
    return { code: 0, details: "" };
  } catch (e) {
    const err = e as GrpcError;
    return { code: err.code, details: err.details };
  }
}

/** Authenticates through `client`; returns metadata carrying the token, as etcd clients send it. */
export async function login(client: EtcdGrpcClient, name: string, password: string): Promise<grpc.Metadata> {
  const { token } = (await client.unary("Auth", "Authenticate", { name, password })) as { token: string };
  const md = new grpc.Metadata();
  md.set("token", token);
  return md;
}
