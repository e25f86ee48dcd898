'use strict'
// KafkaJS producing: acks, the idempotent producer, GZIP (the one codec KafkaJS has without
// plugins), headers, null and empty values, and the broker's refusals.

const assert = require('node:assert/strict')
const { CompressionTypes } = require('kafkajs')
const { byPlace, cleanup, collect, kafkaFor, startBroker, stromTest, uniqueName } = require('./support')

/** Reads every message of `topics` from the start with a fresh group, until `count` arrived. */
async function readAll(t, kafka, topics, count, consumerOptions = {}) {
  const consumer = cleanup(t, kafka.consumer({ groupId: uniqueName('reader'), maxWaitTimeInMs: 500, ...consumerOptions }))
  await consumer.connect()
  await consumer.subscribe({ topics, fromBeginning: true })
  const messages = await collect(consumer, ms => ms.length >= count, { what: `${count} messages` })
  await consumer.disconnect()
  return messages.sort(byPlace)
}

stromTest('acks=all idempotent producer: offsets, keys, values, headers, null and empty', async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker)
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const topic = uniqueName('produce')
  assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] }), true)

  const producer = cleanup(t, kafka.producer({ idempotent: true, maxInFlightRequests: 1 }))
  await producer.connect()
  const messages = []
  for (let i = 0; i < 30; i++) {
    messages.push({
      partition: i % 3,
      key: i === 7 ? null : `key-${i}`,
      value: i === 8 ? null : i === 9 ? Buffer.alloc(0) : `value-${i}`,
      headers: { index: String(i), empty: '', repeated: ['one', 'two'] },
    })
  }
  const metadata = await producer.send({ topic, acks: -1, messages })
  // One answer per partition: each partition's first batch starts at 0.
  assert.deepEqual(
    metadata.map(m => [m.partition, m.errorCode, m.baseOffset]).sort(),
    [[0, 0, '0'], [1, 0, '0'], [2, 0, '0']],
  )

  const got = await readAll(t, kafka, [topic], 30)
  assert.equal(got.length, 30)
  for (let p = 0; p < 3; p++) {
    const mine = got.filter(m => m.partition === p)
    assert.deepEqual(mine.map(m => m.offset), [...Array(10).keys()], `offsets of partition ${p}`)
  }
  for (const m of got) {
    const i = m.partition + 3 * m.offset
    assert.equal(m.key, i === 7 ? null : `key-${i}`, `key of record ${i}`)
    assert.equal(m.value, i === 8 ? null : i === 9 ? '' : `value-${i}`, `value of record ${i}`)
    assert.equal(m.headers.index.toString(), String(i))
    assert.equal(m.headers.empty.toString(), '')
    assert.deepEqual(m.headers.repeated.map(String), ['one', 'two'])
  }

  // The batches as stored: one idempotent producer id, sequences counting records from 0.
  for (let p = 0; p < 3; p++) {
    const batches = broker.storedBatches(topic, p)
    assert.ok(batches.length >= 1)
    let sequence = 0
    for (const b of batches) {
      assert.ok(b.producerId >= 0, `producer id ${b.producerId}`)
      assert.equal(b.producerId, batches[0].producerId)
      assert.equal(b.producerEpoch, 0)
      assert.equal(b.baseSequence, sequence)
      assert.equal(b.transactional, false)
      sequence += b.records
    }
    assert.equal(sequence, 10)
  }

  // A second send continues the sequences; a plain producer (acks=1) writes no producer id.
  await producer.send({ topic, acks: -1, messages: [{ partition: 0, value: 'again' }] })
  const again = broker.storedBatches(topic, 0).at(-1)
  assert.equal(again.baseOffset, 10)
  assert.equal(again.baseSequence, 10)
  const plain = cleanup(t, kafka.producer())
  await plain.connect()
  const [answer] = await plain.send({ topic, acks: 1, messages: [{ partition: 0, value: 'plain' }] })
  assert.equal(answer.baseOffset, '11')
  const plainBatch = broker.storedBatches(topic, 0).at(-1)
  assert.equal(plainBatch.baseOffset, 11)
  assert.equal(plainBatch.producerId, -1)
})

stromTest('GZIP batches are stored compressed and read back', async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker)
  const producer = cleanup(t, kafka.producer())
  await producer.connect()
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const gzipped = uniqueName('gzip')
  const plain = uniqueName('plain')
  await admin.createTopics({ topics: [{ topic: gzipped }, { topic: plain }] })
  const messages = [...Array(200).keys()].map(i => ({ key: `k${i}`, value: `${i}:${'compressible '.repeat(20)}` }))
  await producer.send({ topic: gzipped, compression: CompressionTypes.GZIP, messages })
  await producer.send({ topic: plain, compression: CompressionTypes.None, messages })

  const stored = broker.storedBatches(gzipped, 0)
  assert.ok(stored.every(b => b.codec === 1), `codecs ${stored.map(b => b.codec)}, want gzip (1)`)
  assert.ok(broker.storedBatches(plain, 0).every(b => b.codec === 0))
  const size = batches => batches.reduce((sum, b) => sum + b.bytes, 0)
  assert.ok(size(stored) * 5 < size(broker.storedBatches(plain, 0)),
    `gzip ${size(stored)} bytes vs uncompressed ${size(broker.storedBatches(plain, 0))}`)

  const got = await readAll(t, kafka, [gzipped], 200)
  assert.deepEqual(got.map(m => [m.offset, m.key, m.value]), messages.map((m, i) => [i, m.key, m.value]))
})

stromTest("a topic's compression.type recompresses GZIP batches; KafkaJS reads them back", async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker)
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const topic = uniqueName('recompress')
  await admin.createTopics({ topics: [{ topic, configEntries: [{ name: 'compression.type', value: 'uncompressed' }] }] })
  const producer = cleanup(t, kafka.producer())
  await producer.connect()
  const messages = [...Array(50).keys()].map(i => ({ value: `${i}:${'x'.repeat(100)}` }))
  await producer.send({ topic, compression: CompressionTypes.GZIP, messages })
  assert.ok(broker.storedBatches(topic, 0).every(b => b.codec === 0), 'stored uncompressed')
  const got = await readAll(t, kafka, [topic], 50)
  assert.deepEqual(got.map(m => m.value), messages.map(m => m.value))
})

stromTest("the broker's refusals reach KafkaJS as Kafka's errors", async t => {
  const broker = await startBroker(t, { 'auto.create.topics.enable': 'false' })
  const kafka = kafkaFor(broker, { retry: { initialRetryTime: 100, retries: 2 } })
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const producer = cleanup(t, kafka.producer({ allowAutoTopicCreation: false }))
  await producer.connect()

  const small = uniqueName('small')
  await admin.createTopics({ topics: [{ topic: small, configEntries: [{ name: 'max.message.bytes', value: '1024' }] }] })
  await assert.rejects(
    producer.send({ topic: small, messages: [{ value: Buffer.alloc(4096, 'x') }] }),
    error => error.type === 'MESSAGE_TOO_LARGE' || error.cause?.type === 'MESSAGE_TOO_LARGE',
  )
  const [ok] = await producer.send({ topic: small, messages: [{ value: 'fits' }] })
  assert.equal(ok.baseOffset, '0')

  const compacted = uniqueName('compacted')
  await admin.createTopics({ topics: [{ topic: compacted, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }] })
  await assert.rejects(
    producer.send({ topic: compacted, messages: [{ value: 'no key' }] }),
    error => error.type === 'INVALID_RECORD' || error.cause?.type === 'INVALID_RECORD',
  )
  const [keyed] = await producer.send({ topic: compacted, messages: [{ key: 'k', value: 'v' }] })
  assert.equal(keyed.baseOffset, '0')

  const missing = uniqueName('missing')
  await assert.rejects(
    producer.send({ topic: missing, messages: [{ value: 'x' }] }),
    error => /UNKNOWN_TOPIC_OR_PARTITION|does not host this topic-partition/.test(`${error.type} ${error.message} ${error.cause?.type}`),
  )
  assert.equal((await admin.listTopics()).includes(missing), false)
})
