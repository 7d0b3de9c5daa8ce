'use strict'
// The scenarios. A scenario is a few lines:
//   id, title      how it is named in the table and in latest.json
//   inFlight       calls kept running at once (1 = sequential, one awaited at a time)
//   calls          calls per measurement (scaled by BENCH_SCALE)
//   opsPerCall     Redis operations per call (a pipeline of 100 counts 100)
//   libraries      which libraries take part (default: all in libraries.js); a service's
//                  scenario names ours and the peer it replaces
//   prepare(lib)   optional, once per library before measuring (untimed)
//   call(lib, i)   one call; `lib` is the adapter from libraries.js (lib.raw is the client)

const KEYS = 1000
const VALUE = 'v'.repeat(100) // 100-byte values
const key = (i) => `bench:key:${i % KEYS}`

async function fillKeys(lib) {
  for (let i = 0; i < KEYS; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => lib.set(key(i + j), VALUE)))
  }
}

const mgetKeys = Array.from({ length: KEYS / 10 }, (_, i) => Array.from({ length: 10 }, (_, j) => key(i * 10 + j)))
const pipelineCommands = Array.from({ length: 10 }, (_, p) =>
  Array.from({ length: 100 }, (_, j) => (j % 2 ? ['GET', key(p * 100 + j)] : ['SET', key(p * 100 + j), VALUE])),
)

/** @type {Array<{id: string, title: string, inFlight: number, calls: number, opsPerCall?: number, libraries?: string[], prepare?: (lib: any) => Promise<void>, call: (lib: any, i: number) => Promise<unknown>}>} */
const scenarios = [
  { id: 'get-seq', title: 'GET, sequential', inFlight: 1, calls: 5000, prepare: fillKeys, call: (lib, i) => lib.get(key(i)) },
  { id: 'set-seq', title: 'SET, sequential', inFlight: 1, calls: 5000, call: (lib, i) => lib.set(key(i), VALUE) },
  { id: 'get-100', title: 'GET, 100 in flight', inFlight: 100, calls: 100000, prepare: fillKeys, call: (lib, i) => lib.get(key(i)) },
  { id: 'set-100', title: 'SET, 100 in flight', inFlight: 100, calls: 100000, call: (lib, i) => lib.set(key(i), VALUE) },
  { id: 'mget-10', title: 'MGET of 10 keys, 100 in flight', inFlight: 100, calls: 30000, prepare: fillKeys, call: (lib, i) => lib.mget(mgetKeys[i % mgetKeys.length]) },
  { id: 'pipeline-100', title: 'pipeline of 100 commands (GET/SET), sequential', inFlight: 1, calls: 500, opsPerCall: 100, call: (lib, i) => lib.pipeline(pipelineCommands[i % pipelineCommands.length]) },
]

module.exports = { scenarios, key, VALUE, KEYS }
