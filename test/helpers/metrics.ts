/** The value of an unlabelled metric on the proxy's /proxy/metrics page (NaN when absent). */
export async function proxyMetric(address: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${address}/proxy/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : NaN;
}
