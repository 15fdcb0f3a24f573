// A client connection's budget for answers from etcd it has not read: the
// gate the upstream paces answers by, alone.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AnswerBudget } from "../../src/http2/answer-budget.js";

function budget(limit = 100) {
  const state = { queued: 0, serving: true };
  return {
    state,
    gate: new AnswerBudget(
      limit,
      () => state.queued,
      () => state.serving,
    ),
  };
}

describe("AnswerBudget", () => {
  it("admits answers while admitted and queued bytes stay under the limit, and one answer alone always", () => {
    const { state, gate } = budget();
    assert.equal(gate.admit(250), true, "one answer alone, however large");
    assert.equal(gate.admit(1), false);
    gate.settle(250);
    state.queued = 60;
    assert.equal(gate.admit(40), true);
    assert.equal(gate.admit(1), false, "admitted and queued together count");
  });

  it("admits growth ahead of arrival only while the client keeps up", () => {
    const { state, gate } = budget(800);
    assert.equal(gate.admitAhead(50), true, "nothing queued");
    state.queued = 100;
    assert.equal(gate.admitAhead(50), true, "an eighth of the limit queued");
    state.queued = 101;
    assert.equal(gate.admitAhead(1), false, "more queued: the client is slow");
    assert.equal(gate.admit(1), true, "bytes that arrived are still admitted");
  });

  it("wakes the waiting calls once answers are settled or the client drains, not before", () => {
    const { state, gate } = budget();
    gate.admit(100);
    state.queued = 100;
    let woken = 0;
    assert.equal(
      gate.whenOpen(() => woken++, 10),
      true,
    );
    gate.settle(100);
    assert.equal(woken, 0, "the queue alone still fills the budget");
    state.queued = 200;
    gate.drained();
    assert.equal(woken, 0);
    state.queued = 10;
    gate.drained();
    assert.equal(woken, 1);
    gate.drained();
    assert.equal(woken, 1, "each waiter is woken once");
  });

  it("refuses a waiter past half the limit, counting what each may hold", () => {
    const { gate } = budget(100);
    gate.admit(100);
    assert.equal(
      gate.whenOpen(() => {}, 30),
      true,
    );
    assert.equal(
      gate.whenOpen(() => {}, 20),
      true,
    );
    assert.equal(
      gate.whenOpen(() => {}, 1),
      false,
      "50 of 100 held by waiters already",
    );
  });

  it("wakes nobody for a connection that no longer serves", () => {
    const { state, gate } = budget();
    gate.admit(100);
    let woken = 0;
    gate.whenOpen(() => woken++, 10);
    state.serving = false;
    gate.settle(100);
    assert.equal(woken, 0);
  });
});
