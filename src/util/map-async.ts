/** `source` with each item mapped; every iteration starts afresh (an attempt after a failed one). */
export function mapAsync<T, U>(source: AsyncIterable<T>, map: (item: T) => U): AsyncIterable<U> {
  return {
    async *[Symbol.asyncIterator]() {
      for await (const item of source) yield map(item);
    },
  };
}
