import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { contentLength, FieldRules } from "../../src/http2/header-rules.js";
import { CompressionError, encodeHeaders, HpackDecoder } from "../../src/http2/hpack.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

describe("HPACK decoding", () => {
  it("decodes RFC 7541's Huffman-coded request examples (C.4), in sequence, with the dynamic table", () => {
    const decoder = new HpackDecoder(4096);
    assert.deepEqual(decoder.decode(hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")), {
      ":method": "GET",
      ":scheme": "http",
      ":path": "/",
      ":authority": "www.example.com",
    });
    assert.deepEqual(decoder.decode(hex("8286 84be 5886 a8eb 1064 9cbf")), {
      ":method": "GET",
      ":scheme": "http",
      ":path": "/",
      ":authority": "www.example.com",
      "cache-control": "no-cache",
    });
    assert.deepEqual(decoder.decode(hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")), {
      ":method": "GET",
      ":scheme": "https",
      ":path": "/index.html",
      ":authority": "www.example.com",
      "custom-key": "custom-value",
    });
  });

  it("evicts the oldest entries when a size update shrinks the table", () => {
    const decoder = new HpackDecoder(4096);
    decoder.decode(hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")); // adds :authority at index 62
    assert.throws(() => decoder.decode(hex("20 be")), CompressionError, "size 0 empties the table");
  });

  it("refuses malformed blocks with a compression error", () => {
    // truncated integer, unknown index, truncated string, bad Huffman padding, truncated name
    const bad = ["ff", "c0", "41 85 ffff", "41 81 00", "00 05 61"];
    for (const block of bad) {
      assert.throws(() => new HpackDecoder(4096).decode(hex(block)), CompressionError, block);
    }
    assert.throws(() => new HpackDecoder(100).decode(hex("3f e1 1f")), CompressionError, "size above the limit");
  });
});

describe("HPACK encoding", () => {
  it("round-trips fields: whole static entries, static names, new names, long values, repeats", () => {
    const long = "x".repeat(300);
    const block = encodeHeaders([
      [":status", 200],
      ["content-type", "application/grpc"],
      ["grpc-status", "0"],
      ["grpc-message", long],
      ["set-cookie", ["a=1", "b=2"]],
    ]);
    assert.equal(block[0], 0x88, ":status 200 is static index 8");
    assert.deepEqual(new HpackDecoder(4096).decode(block), {
      ":status": "200",
      "content-type": "application/grpc",
      "grpc-status": "0",
      "grpc-message": long,
      "set-cookie": "a=1, b=2",
    });
  });
});

describe("HPACK decoding bounds", () => {
  const literal = (name: string, value: string, first = 0x00) =>
    Buffer.from([first, name.length, ...Buffer.from(name), value.length, ...Buffer.from(value)]);

  it("decodes an HPACK bomb to nothing kept, flagged oversized, and the table stays in step", () => {
    const decoder = new HpackDecoder(4096, 64 * 1024);
    // A 100-byte token added to the table, then 16,000 one-byte references to it: 2 MB decoded.
    const bomb = Buffer.concat([literal("token", "t".repeat(100), 0x40), Buffer.alloc(16_000, 0xbe)]);
    assert.deepEqual(decoder.decode(bomb), {});
    assert.equal(decoder.oversized, true);
    // The entry was still added: the next block can refer to it.
    assert.deepEqual(decoder.decode(Buffer.from([0xbe])), { token: "t".repeat(100) });
    assert.equal(decoder.oversized, false);
  });

  it("never fails on random bytes with anything but a CompressionError, and never keeps more than its limit", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 256 }), { maxLength: 8 }), (blocks) => {
        const decoder = new HpackDecoder(4096, 4096);
        for (const block of blocks) {
          try {
            const headers = decoder.decode(block);
            let size = 0;
            for (const [name, value] of Object.entries(headers)) size += name.length + value.length + 32;
            // Joined repeats count once here, so this is a lower bound of what the limit counted.
            if (size > 4096 + 32 * 256) return false;
          } catch (err) {
            if (!(err instanceof CompressionError)) return false;
          }
        }
        return true;
      }),
      { seed: 7, numRuns: 2000 },
    );
  });
});

describe("request header rules (RFC 9113 §8.2–8.3)", () => {
  const verdict = (fields: Array<[string, string]>, kind: "request" | "trailers" = "request") => {
    const rules = new FieldRules();
    rules.reset(kind);
    for (const [n, v] of fields) rules.field(n, v);
    return rules.verdict();
  };
  const ok: Array<[string, string]> = [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/etcdserverpb.KV/Range"],
    [":authority", "x"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
  ];

  it("accepts a well-formed gRPC request and plain trailers", () => {
    assert.equal(verdict(ok), undefined);
    assert.equal(verdict([["grpc-status", "0"]], "trailers"), undefined);
  });

  for (const [why, fields] of [
    ["an uppercase name", [...ok, ["Content-Type", "x"]]],
    ["a connection-specific field", [...ok, ["connection", "close"]]],
    ["te other than trailers", [...ok.slice(0, 5), ["te", "gzip"]]],
    ["an unknown pseudo-header", [[":foo", "x"], ...ok]],
    ["a response pseudo-header", [[":status", "200"], ...ok]],
    ["a pseudo-header after a regular field", [...ok, [":authority", "y"]]],
    ["a duplicated :method", [[":method", "GET"], ...ok]],
    ["no :method", ok.filter(([n]) => n !== ":method")],
    ["no :scheme", ok.filter(([n]) => n !== ":scheme")],
    ["no :path", ok.filter(([n]) => n !== ":path")],
    ["an empty :path", ok.map(([n, v]) => [n, n === ":path" ? "" : v])],
    ["a value with a line feed", [...ok, ["token", "a\nb"]]],
    ["a value with surrounding space", [...ok, ["token", " a"]]],
  ] as Array<[string, Array<[string, string]>]>) {
    it(`refuses ${why}`, () => assert.notEqual(verdict(fields), undefined));
  }

  it("refuses pseudo-headers in trailers", () => {
    assert.notEqual(verdict([[":path", "/"]], "trailers"), undefined);
  });

  it("reads content-length strictly", () => {
    assert.equal(contentLength(undefined), undefined);
    assert.equal(contentLength("12"), 12);
    assert.ok(Number.isNaN(contentLength("1,2")));
    assert.ok(Number.isNaN(contentLength("-1")));
  });
});
