import * as grpc from "@grpc/grpc-js";
import http2 from "node:http2";
const addr = process.argv[2] ?? "127.0.0.1:23790";
const mode = process.argv[3] ?? "grpcjs";
const secs = Number(process.argv[4] ?? 5);
// RangeRequest{key:"bench/large/", range_end:"bench/large0"}
const enc = (f, s) => { const b = Buffer.from(s); return Buffer.concat([Buffer.from([(f<<3)|2, b.length]), b]); };
const req = Buffer.concat([enc(1,"bench/large/"), enc(2,"bench/large0")]);
let n = 0, bytes = 0;
const until = Date.now() + secs*1000;
const c0 = process.cpuUsage(); const t0 = Date.now();
if (mode === "grpcjs") {
  const id = (b) => b;
  const clients = Array.from({length: 8}, () => new grpc.Client(addr, grpc.credentials.createInsecure(), {"grpc.use_local_subchannel_pool":1, "grpc.max_receive_message_length": -1}));
  await Promise.all(clients.map(c => new Promise(res => { const fire = () => { if (Date.now() >= until) return res(); c.makeUnaryRequest("/etcdserverpb.KV/Range", id, id, req, (e, m) => { if (e) throw e; n++; bytes += m.length; fire(); }); }; fire(); })));
} else {
  const frame = Buffer.alloc(5 + req.length); frame.writeUInt32BE(req.length, 1); req.copy(frame, 5);
  const sessions = Array.from({length: 8}, () => http2.connect(`http://${addr}`, { settings: { initialWindowSize: 16 << 20, maxFrameSize: mode === "bigframe" ? (1<<24)-1 : 16384 } }));
  for (const s of sessions) s.on("connect", () => s.setLocalWindowSize(64 << 20));
  await Promise.all(sessions.map(s => new Promise(res => { const fire = () => { if (Date.now() >= until) return res(); const st = s.request({":method":"POST", ":path":"/etcdserverpb.KV/Range", "content-type":"application/grpc", te:"trailers"}); let got = 0; st.on("data", (d) => got += d.length); st.on("end", () => { n++; bytes += got; fire(); }); st.on("error", (e) => { throw e; }); st.end(frame); }; fire(); })));
  sessions.forEach(s => s.close());
}
const c = process.cpuUsage(c0); const el = (Date.now() - t0)/1000;
console.log(mode, "calls/s", (n/el).toFixed(1), "MB/call", (bytes/n/1e6).toFixed(3), "client CPU ms/call", ((c.user+c.system)/1000/n).toFixed(2), "user", (c.user/1000/n).toFixed(2), "sys", (c.system/1000/n).toFixed(2));
process.exit(0);
