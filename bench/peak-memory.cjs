/**
 * Preloaded into a child process by auditor-memory.bench.ts (`node --require bench/peak-memory.cjs ...`):
 * when the process exits it prints one JSON line on stdout, its last, with its peak resident set size
 * (process.resourceUsage().maxRSS, exact) and the largest V8 heap in use it saw (sampled every 10 ms,
 * so a shorter peak can be missed).
 */
let heapUsedPeak = 0
const sampler = setInterval(() => {
  heapUsedPeak = Math.max(heapUsedPeak, process.memoryUsage().heapUsed)
}, 10)
sampler.unref()
process.on('exit', () => {
  heapUsedPeak = Math.max(heapUsedPeak, process.memoryUsage().heapUsed)
  process.stdout.write(`\n${JSON.stringify({ peakRssBytes: process.resourceUsage().maxRSS * 1024, heapUsedPeakBytes: heapUsedPeak })}\n`)
})
