'use strict'
// KafkaJS transactions (transactions v1: KafkaJS sends EndTxn v1 and AddPartitionsToTxn):
// commit and abort, read_committed against read_uncommitted, offsets committed in a
// transaction, and a zombie producer fenced by its successor.

const assert = require('node:assert/strict')
const { byPlace, cleanup, collect, describe, kafkaFor, startBroker, stromTest, uniqueName, waitUntil } = require('./support')

const CONSUMER_OPTIONS = { maxWaitTimeInMs: 500, heartbeatInterval: 500, sessionTimeout: 6000 }

/**
 * Reads `topic` from the start with a fresh group until the message "end" arrived in each of
 * `partitions` partitions: every message before it has then been seen or filtered out.
 */
async function readThroughEnd(t, kafka, topic, partitions, { readUncommitted }) {
  const consumer = cleanup(t, kafka.consumer({ groupId: uniqueName('reader'), readUncommitted, ...CONSUMER_OPTIONS }))
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const messages = await collect(consumer, ms => ms.filter(m => m.value === 'end').length === partitions, {
    what: `"end" in ${partitions} partitions`,
  })
  await consumer.disconnect()
  return describe(messages.sort(byPlace))
}

stromTest('commit, abort, commit: read_committed sees the committed, read_uncommitted all, one marker each', async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker)
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const topic = uniqueName('t')
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] })
  const transactionalId = uniqueName('txn')
  const producer = cleanup(t, kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 }))
  await producer.connect()

  for (const [label, commit] of [['a', true], ['b', false], ['c', true]]) {
    const txn = await producer.transaction()
    await txn.send({
      topic,
      acks: -1,
      messages: [...Array(6).keys()].map(i => ({ partition: i % 2, value: `${label}-${i}` })),
    })
    await (commit ? txn.commit() : txn.abort())
  }
  const plain = cleanup(t, kafka.producer())
  await plain.connect()
  await plain.send({ topic, messages: [{ partition: 0, value: 'end' }, { partition: 1, value: 'end' }] })

  // Each transaction put 3 messages in each partition and then its marker.
  assert.deepEqual(await readThroughEnd(t, kafka, topic, 2, { readUncommitted: false }), [
    '0/0=a-0', '0/1=a-2', '0/2=a-4', '0/8=c-0', '0/9=c-2', '0/10=c-4', '0/12=end',
    '1/0=a-1', '1/1=a-3', '1/2=a-5', '1/8=c-1', '1/9=c-3', '1/10=c-5', '1/12=end',
  ])
  assert.deepEqual(await readThroughEnd(t, kafka, topic, 2, { readUncommitted: true }), [
    '0/0=a-0', '0/1=a-2', '0/2=a-4', '0/4=b-0', '0/5=b-2', '0/6=b-4', '0/8=c-0', '0/9=c-2', '0/10=c-4', '0/12=end',
    '1/0=a-1', '1/1=a-3', '1/2=a-5', '1/4=b-1', '1/5=b-3', '1/6=b-5', '1/8=c-1', '1/9=c-3', '1/10=c-5', '1/12=end',
  ])

  // The stored batches: the data transactional, the markers control batches, one producer.
  const batches = broker.storedBatches(topic, 0)
  assert.deepEqual(batches.map(b => [b.baseOffset, b.transactional, b.control]), [
    [0, true, false], [3, true, true], [4, true, false], [7, true, true], [8, true, false], [11, true, true], [12, false, false],
  ])
  assert.equal(new Set(batches.slice(0, 6).map(b => `${b.producerId}/${b.producerEpoch}`)).size, 1)
})

stromTest('offsets sent in a transaction are committed with it, and not when it aborts', async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker)
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const input = uniqueName('in')
  const output = uniqueName('out')
  const groupId = uniqueName('g')
  await admin.createTopics({ topics: [{ topic: input }, { topic: output }] })
  const source = cleanup(t, kafka.producer())
  await source.connect()
  await source.send({ topic: input, messages: [...Array(10).keys()].map(i => ({ value: `in-${i}` })) })

  const producer = cleanup(t, kafka.producer({ transactionalId: uniqueName('txn'), idempotent: true, maxInFlightRequests: 1 }))
  await producer.connect()
  const committedOffset = async () => {
    const [entry] = await admin.fetchOffsets({ groupId, topics: [input] })
    return Number(entry.partitions[0].offset)
  }

  // An aborted consume-transform-produce step: nothing of it stays.
  const aborted = await producer.transaction()
  await aborted.send({ topic: output, messages: [{ value: 'out-aborted' }] })
  await aborted.sendOffsets({ consumerGroupId: groupId, topics: [{ topic: input, partitions: [{ partition: 0, offset: '5' }] }] })
  await aborted.abort()
  assert.equal(await committedOffset(), -1)

  // Two committed steps of five records each.
  for (const step of [0, 1]) {
    const txn = await producer.transaction()
    await txn.send({ topic: output, messages: [...Array(5).keys()].map(i => ({ value: `out-in-${5 * step + i}` })) })
    await txn.sendOffsets({
      consumerGroupId: groupId,
      topics: [{ topic: input, partitions: [{ partition: 0, offset: String(5 * (step + 1)) }] }],
    })
    await txn.commit()
    assert.equal(await committedOffset(), 5 * (step + 1))
  }

  // A member of the group starts after the transactional commits: nothing left to read.
  await source.send({ topic: input, messages: [{ value: 'in-10' }] })
  const member = cleanup(t, kafka.consumer({ groupId, ...CONSUMER_OPTIONS }))
  await member.connect()
  await member.subscribe({ topics: [input], fromBeginning: true })
  const rest = await collect(member, ms => ms.length >= 1)
  assert.deepEqual(rest.map(m => `${m.offset}=${m.value}`), ['10=in-10'])

  await source.send({ topic: output, messages: [{ value: 'end' }] })
  const out = await readThroughEnd(t, kafka, output, 1, { readUncommitted: false })
  assert.deepEqual(out.map(d => d.split('=')[1]), [...[...Array(10).keys()].map(i => `out-in-${i}`), 'end'])
})

stromTest('a second producer with the same transactional id fences the first', async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker, { retry: { initialRetryTime: 100, retries: 3 } })
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const topic = uniqueName('t')
  await admin.createTopics({ topics: [{ topic }] })
  const transactionalId = uniqueName('txn')
  const options = { transactionalId, idempotent: true, maxInFlightRequests: 1 }

  const zombie = cleanup(t, kafka.producer(options))
  await zombie.connect()
  const zombieTxn = await zombie.transaction()
  await zombieTxn.send({ topic, messages: [{ value: 'zombie' }] })

  // The successor's InitProducerId aborts the zombie's open transaction and bumps the epoch.
  const successor = cleanup(t, kafka.producer(options))
  await successor.connect()
  const txn = await successor.transaction()
  await txn.send({ topic, messages: [{ value: 'successor' }] })
  await txn.commit()

  // KafkaJS speaks EndTxn v1, which predates PRODUCER_FENCED: Kafka answers such clients
  // INVALID_PRODUCER_EPOCH instead.
  await assert.rejects(zombieTxn.commit(), error => {
    const type = error.type ?? error.cause?.type
    assert.equal(type, 'INVALID_PRODUCER_EPOCH', `${error.name}: ${error.message} (${type})`)
    return true
  })

  const plain = cleanup(t, kafka.producer())
  await plain.connect()
  await plain.send({ topic, messages: [{ value: 'end' }] })
  const seen = await readThroughEnd(t, kafka, topic, 1, { readUncommitted: false })
  assert.deepEqual(seen.map(d => d.split('=')[1]), ['successor', 'end'])
})

stromTest('an open transaction holds read_committed consumers and the last stable offset', async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker)
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const topic = uniqueName('t')
  await admin.createTopics({ topics: [{ topic }] })
  const plain = cleanup(t, kafka.producer())
  await plain.connect()
  await plain.send({ topic, messages: [{ value: 'before' }] })
  const producer = cleanup(t, kafka.producer({ transactionalId: uniqueName('txn'), idempotent: true, maxInFlightRequests: 1 }))
  await producer.connect()
  const txn = await producer.transaction()
  await txn.send({ topic, messages: [{ value: 'open-0' }, { value: 'open-1' }] })
  await plain.send({ topic, messages: [{ value: 'after' }] })

  // fetchTopicOffsets asks for read_committed offsets: the end is the open transaction's start.
  const [offsets] = await admin.fetchTopicOffsets(topic)
  assert.deepEqual([offsets.low, offsets.high, offsets.offset], ['0', '1', '1'])

  const reader = cleanup(t, kafka.consumer({ groupId: uniqueName('reader'), ...CONSUMER_OPTIONS }))
  await reader.connect()
  await reader.subscribe({ topics: [topic], fromBeginning: true })
  const got = await collect(reader, ms => ms.length >= 1)
  assert.deepEqual(got.map(m => m.value), ['before'])
  await txn.commit()
  await waitUntil(() => `the committed transaction and "after": ${describe(got)}`, () => got.length >= 4)
  assert.deepEqual(describe(got), ['0/0=before', '0/1=open-0', '0/2=open-1', '0/3=after'])
  const [later] = await admin.fetchTopicOffsets(topic)
  assert.equal(later.high, '5')
})
