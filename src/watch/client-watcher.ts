import {
  WatchCreateRequest_FilterType,
  type ResponseHeader,
  type WatchCreateRequest,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { EventBatch, EventDelivery, EventFilter, Variant } from "./responses.js";
import type { Receiver, SharedWatch } from "./shared-watch.js";

/** Where a watcher's responses go: its client's stream (WatchSession). */
export interface WatcherSink {
  sendCreated(watcher: ClientWatcher, header: ResponseHeader): void;
  sendCreateFailed(watcher: ClientWatcher, header: ResponseHeader, reason: string): void;
  sendEvents(watcher: ClientWatcher, variant: Variant): void;
  sendProgress(watcher: ClientWatcher, header: ResponseHeader): void;
  sendCanceled(watcher: ClientWatcher, header: ResponseHeader, compactRevision: bigint, reason: string): void;
}

/** One client watcher: its ID, what it asked for, and how far it has got. */
export class ClientWatcher implements Receiver, EventFilter {
  nextRev = 0n;
  shared: SharedWatch | undefined;
  readonly rangeEnd: Uint8Array;
  readonly prevKv: boolean;
  readonly noPut: boolean;
  readonly noDelete: boolean;
  readonly progressNotify: boolean;
  readonly fragment: boolean;
  created = false;
  /** Its last event response, which the client may not have read yet (see the session's batching of unread events). */
  unreadSeq = -1;
  unreadVariant: Variant | undefined;
  unreadBatch: EventBatch | undefined;
  private onSettled: (() => void) | undefined;

  constructor(
    private readonly session: WatcherSink,
    readonly id: bigint,
    readonly key: Uint8Array,
    request: WatchCreateRequest,
    readonly autoId: boolean,
  ) {
    this.rangeEnd = request.rangeEnd;
    this.prevKv = request.prevKv;
    this.noPut = request.filters.includes(WatchCreateRequest_FilterType.NOPUT);
    this.noDelete = request.filters.includes(WatchCreateRequest_FilterType.NODELETE);
    this.progressNotify = request.progressNotify;
    this.fragment = request.fragment;
  }

  /** Resolves once the watcher is created, refused, or gone. */
  settled(): Promise<void> {
    if (this.created) return Promise.resolve();
    return new Promise((resolve) => (this.onSettled = resolve));
  }

  release(): void {
    const settle = this.onSettled;
    this.onSettled = undefined;
    settle?.();
  }

  markCreated(header: ResponseHeader): void {
    this.created = true;
    this.session.sendCreated(this, header);
    this.release();
  }

  upstreamCreated(header: ResponseHeader): void {
    if (this.created) return;
    if (this.nextRev === 0n) this.nextRev = header.revision + 1n;
    this.markCreated(header);
  }

  createFailed(header: ResponseHeader, reason: string): void {
    this.session.sendCreateFailed(this, header, reason);
  }

  deliver(delivery: EventDelivery): void {
    if (delivery.lastRevision < this.nextRev) return;
    const variant = delivery.variantFor(this, this.nextRev);
    // Filtered events count too: the watcher has seen their revisions.
    this.nextRev = delivery.nextRevision;
    if (variant.events.length > 0) this.session.sendEvents(this, variant);
  }

  progress(header: ResponseHeader): void {
    if (this.progressNotify) this.session.sendProgress(this, header);
  }

  canceled(header: ResponseHeader, compactRevision: bigint, reason: string): void {
    this.session.sendCanceled(this, header, compactRevision, reason);
  }
}
