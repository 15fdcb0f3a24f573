/**
 * What a feature of the proxy is to the composition root: something that
 * may need starting once the features it uses are up, and stopping before
 * they go down.
 */
export interface Feature {
  start?(): void | Promise<void>;
  stop?(): void | Promise<void>;
}

/** Starts features in the order they are added and stops them in the reverse order. */
export class Lifecycle {
  private readonly started: Feature[] = [];
  private stopping: Promise<void> | undefined;

  async add<T extends Feature>(feature: T): Promise<T> {
    await feature.start?.();
    this.started.push(feature);
    return feature;
  }

  /** Stops every started feature, last started first; once, however often it is asked. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const feature of this.started.reverse()) await feature.stop?.();
    })();
    return this.stopping;
  }
}
