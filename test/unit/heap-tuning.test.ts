import assert from "node:assert/strict";
import { test } from "node:test";
import { tuneHeapForForwarding } from "../../src/heap-tuning.js";

test("the heap setting is the proxy's unless the operator named it to node", () => {
  assert.equal(tuneHeapForForwarding([], ""), true);
  assert.equal(tuneHeapForForwarding(["--heap-growing-percent=50"], ""), false);
  assert.equal(
    tuneHeapForForwarding(["--enable-source-maps"], "--max-old-space-size=512 --heap_growing_percent=50"),
    false,
  );
  assert.equal(tuneHeapForForwarding(["--enable-source-maps"], "--max-old-space-size=512"), true);
});
