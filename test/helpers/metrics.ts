/**
 * The value of a metric on the proxy's /proxy/metrics page (NaN when
 * absent); with `labels`, of the series with exactly those labels.
 */
export async function proxyMetric(address: string, name: string, labels?: Record<string, string>): Promise<number> {
  const text = await (await fetch(`http://${address}/proxy/metrics`)).text();
  const series =
    labels === undefined
      ? name
      : `${name}{${Object.entries(labels)
          .map(([k, v]) => `${k}="${v}"`)
          .join(",")}}`;
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}
