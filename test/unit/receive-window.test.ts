// A receive window alone: what the peer may send, and when credit goes back.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ReceiveWindow } from "../../src/http2/receive-window.js";

describe("ReceiveWindow", () => {
  it("refuses data beyond the window, and credits back in increments of at least half of it", () => {
    const w = new ReceiveWindow(100);
    assert.equal(w.take(60), true);
    assert.equal(w.take(41), false, "only 40 left");
    assert.equal(w.credit(30), 0, "under half the window: no WINDOW_UPDATE yet");
    assert.equal(w.credit(20), 50);
    assert.equal(w.take(90), true, "40 left and 50 credited");
    assert.equal(w.take(1), false);
  });

  it("grows by what is given and widens to a size, announcing only the difference", () => {
    const w = new ReceiveWindow(16);
    w.take(16);
    assert.equal(w.grow(16), 16);
    assert.equal(w.size, 32);
    assert.equal(w.credit(15), 0, "half of the grown window is 16");
    assert.equal(w.credit(1), 16);
    assert.equal(w.widen(64), 32, "32 available: 32 more makes 64");
    assert.equal(w.widen(10), 0, "never narrowed");
    assert.equal(w.size, 64);
  });
});
