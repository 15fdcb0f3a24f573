import assert from "node:assert/strict";
import { describe, it } from "node:test";
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
