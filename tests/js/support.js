'use strict'
// Helpers shared by the KafkaJS tests: a real `strom server` per test, polling waits with
// deadlines, clients set up for a single loopback broker, and a reader of the broker's segment
// files (the batches as stored, so a test can see the codec and producer id a client sent).

const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { test } = require('node:test')
const { Kafka, logLevel } = require('kafkajs')

// Bounds on every wait, generous because CI shares two cores with the Rust suite; a healthy
// broker answers in milliseconds.
const BROKER_READY_TIMEOUT_MS = 30_000
const BROKER_STOP_TIMEOUT_MS = 15_000
const POLL_INTERVAL_MS = 50
const WAIT_TIMEOUT_MS = 30_000
// The bound on one test (node --test enforces it; see `test(name, TEST_OPTIONS, fn)`).
const TEST_OPTIONS = { timeout: 90_000 }
const START_ATTEMPTS = 3
const LOG_TAIL_LINES = 60

// A new classic group forms its first generation at once instead of after Kafka's 3 s delay.
const GROUP_SETTINGS = { 'group.initial.rebalance.delay.ms': '0' }

const REPO_ROOT = path.resolve(__dirname, '..', '..')

/** $STROM_BIN, else target/debug/strom under the repository root. */
function stromBin() {
  if (process.env.STROM_BIN) return process.env.STROM_BIN
  const candidate = path.join(REPO_ROOT, 'target', 'debug', 'strom')
  if (!fs.existsSync(candidate)) {
    throw new Error('no strom binary: set STROM_BIN or run `cargo build -p strom`')
  }
  return candidate
}

// setpriv (util-linux) makes the kernel SIGTERM the broker if this process dies without
// stopping it; without it, brokers are still stopped on every normal exit.
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find(p => fs.existsSync(p))

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** Sends ApiVersions v0 over a raw socket; resolves when the broker answers with error 0. */
function apiVersionsOk(port) {
  return new Promise((resolve, reject) => {
    const clientId = Buffer.from('strom-js-test')
    const header = Buffer.alloc(10)
    header.writeInt16BE(18, 0) // ApiVersions
    header.writeInt16BE(0, 2)
    header.writeInt32BE(7, 4) // correlation id
    header.writeInt16BE(clientId.length, 8)
    const body = Buffer.concat([header, clientId])
    const size = Buffer.alloc(4)
    size.writeInt32BE(body.length)
    const socket = net.connect({ host: '127.0.0.1', port })
    let received = Buffer.alloc(0)
    const fail = error => {
      socket.destroy()
      reject(error)
    }
    socket.setTimeout(2000, () => fail(new Error('ApiVersions timed out')))
    socket.on('error', fail)
    socket.on('connect', () => socket.write(Buffer.concat([size, body])))
    socket.on('data', chunk => {
      received = Buffer.concat([received, chunk])
      if (received.length >= 10) {
        socket.destroy()
        const ok = received.readInt32BE(4) === 7 && received.readInt16BE(8) === 0
        ok ? resolve() : reject(new Error('unexpected ApiVersions answer'))
      }
    })
    socket.on('end', () => fail(new Error('broker closed the connection')))
  })
}

// Brokers still running; stopped if the process exits some other way.
const running = new Set()
process.on('exit', () => {
  for (const broker of running) broker.process?.kill('SIGKILL')
})

class Broker {
  constructor(settings = {}) {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'strom-js-'))
    this.dataDir = path.join(this.root, 'data')
    this.logPath = path.join(this.root, 'broker.log')
    this.settings = settings
    this.port = 0
    this.process = null
  }

  get addr() {
    return `127.0.0.1:${this.port}`
  }

  /** Starts on a fresh free port the first time, on the same port afterwards. */
  async start() {
    if (this.process) throw new Error('broker already running')
    const keepPort = this.port !== 0
    for (let attempt = 1; ; attempt++) {
      if (!keepPort) this.port = await freePort()
      this.spawn()
      try {
        await this.waitReady()
        return this
      } catch (error) {
        const exited = this.process.exitCode !== null || this.process.signalCode !== null
        await this.stop()
        // A port picked by binding to :0 can be taken by someone else before the broker
        // binds it; only then is another port worth a try.
        if (!exited || keepPort || attempt === START_ATTEMPTS) {
          throw new Error(`strom did not become ready on ${this.addr}: ${error.message}\n${this.logTail()}`)
        }
      }
    }
  }

  spawn() {
    fs.mkdirSync(this.dataDir, { recursive: true })
    const args = ['server', '--listeners', this.addr, '--data-dir', this.dataDir]
    for (const key of Object.keys(this.settings).sort()) args.push('--set', `${key}=${this.settings[key]}`)
    const bin = stromBin()
    fs.appendFileSync(this.logPath, `==== start: ${bin} ${args.join(' ')}\n`)
    const log = fs.openSync(this.logPath, 'a')
    // The broker reads STROM_* variables as broker properties: pass none but STROM_LOG.
    const env = { NO_COLOR: '1' }
    for (const [k, v] of Object.entries(process.env)) {
      if (!k.startsWith('STROM_') || k === 'STROM_LOG') env[k] = v
    }
    const [command, commandArgs] = SETPRIV
      ? [SETPRIV, ['--pdeathsig', 'TERM', '--', bin, ...args]]
      : [bin, args]
    const child = spawn(command, commandArgs, { stdio: ['ignore', log, log], env })
    fs.closeSync(log)
    child.exited = new Promise(resolve => child.once('exit', resolve))
    this.process = child
    running.add(this)
  }

  async waitReady() {
    const deadline = Date.now() + BROKER_READY_TIMEOUT_MS
    let last
    for (;;) {
      if (this.process.exitCode !== null || this.process.signalCode !== null) {
        throw new Error(`strom exited with ${this.process.exitCode ?? this.process.signalCode}`)
      }
      try {
        await apiVersionsOk(this.port)
        return
      } catch (error) {
        last = error
      }
      if (Date.now() > deadline) throw new Error(`not ready after ${BROKER_READY_TIMEOUT_MS} ms: ${last?.message}`)
      await sleep(POLL_INTERVAL_MS)
    }
  }

  /** Sends `signal` (SIGTERM: a graceful shutdown), kills after a deadline. */
  async stop(signal = 'SIGTERM') {
    const child = this.process
    if (!child) return
    this.process = null
    running.delete(this)
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal)
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        fs.appendFileSync(this.logPath, '==== node test: broker ignored the signal; killed\n')
      }, BROKER_STOP_TIMEOUT_MS)
      await child.exited
      clearTimeout(timer)
    }
  }

  kill() {
    return this.stop('SIGKILL')
  }

  /** Stops the broker (gracefully by default) and starts it on the same port and directory. */
  async restart(signal = 'SIGTERM') {
    await this.stop(signal)
    return this.start()
  }

  logTail() {
    let text = ''
    try {
      text = fs.readFileSync(this.logPath, 'utf8')
    } catch {}
    const lines = text.trimEnd().split('\n').slice(-LOG_TAIL_LINES)
    return `---- ${this.logPath} (last ${lines.length} lines) ----\n${lines.join('\n')}`
  }

  /**
   * Every record batch the broker stores for a partition, from its segment files
   * (`<data dir>/<topic>-<partition>/*.log`, Kafka's layout): offsets, codec, producer id and
   * epoch, base sequence, whether transactional or control, record count.
   */
  storedBatches(topic, partition) {
    const dir = path.join(this.dataDir, `${topic}-${partition}`)
    const batches = []
    for (const file of fs.readdirSync(dir).filter(f => f.endsWith('.log')).sort()) {
      const data = fs.readFileSync(path.join(dir, file))
      for (let at = 0; at + 61 <= data.length; ) {
        const length = data.readInt32BE(at + 8)
        if (length <= 0) break
        const attributes = data.readInt16BE(at + 21)
        batches.push({
          baseOffset: Number(data.readBigInt64BE(at)),
          lastOffset: Number(data.readBigInt64BE(at)) + data.readInt32BE(at + 23),
          bytes: 12 + length,
          codec: attributes & 0x07,
          transactional: (attributes & 0x10) !== 0,
          control: (attributes & 0x20) !== 0,
          producerId: Number(data.readBigInt64BE(at + 43)),
          producerEpoch: data.readInt16BE(at + 51),
          baseSequence: data.readInt32BE(at + 53),
          records: data.readInt32BE(at + 57),
        })
        at += 12 + length
      }
    }
    return batches
  }
}

/**
 * Starts a broker with the given `--set` properties for the test `t` (one made by `stromTest`);
 * it is stopped and its directory removed when the test ends. KafkaJS reads only through
 * consumer groups, so every broker here forms a new group's first generation at once
 * (GROUP_SETTINGS) unless the test says otherwise.
 */
async function startBroker(t, settings = {}) {
  const broker = new Broker({ ...GROUP_SETTINGS, ...settings })
  t.brokers.push(broker)
  t.cleanups.push(async () => {
    await broker.stop()
    if (process.env.STROM_JS_TEST_DEBUG) process.stderr.write(`${broker.logTail()}\n`)
    if (!process.env.STROM_JS_TEST_KEEP) fs.rmSync(broker.root, { recursive: true, force: true })
  })
  await broker.start()
  return broker
}

const CLEANUP_TIMEOUT_MS = 15_000

/**
 * A node:test test bounded by TEST_OPTIONS. What it set up with `startBroker` and `cleanup` is
 * torn down when it ends, last first (so clients disconnect before their broker stops); when
 * it fails, the error carries the log tails of its brokers.
 */
function stromTest(name, fn) {
  return test(name, TEST_OPTIONS, async t => {
    t.brokers = []
    t.cleanups = []
    try {
      await fn(t)
    } catch (error) {
      const tails = t.brokers.map(b => b.logTail()).join('\n')
      if (tails && error instanceof Error) error.message += `\n${tails}`
      throw error
    } finally {
      for (const step of t.cleanups.reverse()) {
        let timer
        const bound = new Promise(resolve => (timer = setTimeout(resolve, CLEANUP_TIMEOUT_MS)))
        await Promise.race([Promise.resolve().then(step).catch(() => {}), bound])
        clearTimeout(timer)
      }
    }
  })
}

/** A KafkaJS client for the broker. Clients it makes must be disconnected by the test. */
function kafkaFor(broker, options = {}) {
  return new Kafka({
    clientId: 'strom-js-test',
    brokers: [broker.addr],
    logLevel: process.env.STROM_JS_TEST_DEBUG ? logLevel.DEBUG : logLevel.NOTHING,
    retry: { initialRetryTime: 100, retries: 8 },
    ...options,
  })
}

/** Disconnects `client` when the test ends (before its broker stops). */
function cleanup(t, client) {
  t.cleanups.push(() => client.disconnect())
  return client
}

let counter = 0
/** A topic (or group, or transactional id) name unique to this process. */
function uniqueName(label) {
  counter += 1
  return `js-${label}-${process.pid}-${Date.now() % 1_000_000}-${counter}`
}

/** Polls `condition` until it returns something truthy; throws after `timeoutMs`. */
async function waitUntil(what, condition, timeoutMs = WAIT_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    try {
      const result = await condition()
      if (result) return result
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}` +
        (last ? ` (last error: ${last.message})` : ''))
    }
    await sleep(POLL_INTERVAL_MS)
  }
}

/**
 * Runs `consumer` (already subscribed) and collects every message until `stop(messages)` holds;
 * throws after `timeoutMs`. The consumer keeps running (and collecting into the returned
 * array) until disconnected. `runOptions` go to consumer.run (e.g. autoCommit).
 */
async function collect(consumer, stop, { timeoutMs = WAIT_TIMEOUT_MS, what = 'messages', runOptions = {} } = {}) {
  const messages = []
  let done
  const finished = new Promise(resolve => (done = resolve))
  await consumer.run({
    ...runOptions,
    eachMessage: async ({ topic, partition, message }) => {
      messages.push({
        topic,
        partition,
        offset: Number(message.offset),
        key: message.key === null ? null : message.key.toString(),
        value: message.value === null ? null : message.value.toString(),
        headers: message.headers,
        timestamp: Number(message.timestamp),
      })
      if (stop(messages)) done()
    },
  })
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}: have ${messages.length}: ${
      JSON.stringify(messages.map(m => `${m.partition}/${m.offset}=${m.value}`))}`)), timeoutMs)
  })
  try {
    await Promise.race([finished, timeout])
  } finally {
    clearTimeout(timer)
  }
  return messages
}

/** Orders messages by partition, then offset. */
const byPlace = (a, b) => a.partition - b.partition || a.offset - b.offset

/** "partition/offset=value" for each message, in order: easy to compare whole. */
const describe = messages => messages.map(m => `${m.partition}/${m.offset}=${m.value}`)

module.exports = {
  Broker,
  GROUP_SETTINGS,
  TEST_OPTIONS,
  WAIT_TIMEOUT_MS,
  byPlace,
  cleanup,
  collect,
  describe,
  kafkaFor,
  sleep,
  startBroker,
  stromTest,
  uniqueName,
  waitUntil,
}
