'use strict'
// The KafkaJS admin client: topics (create, list, metadata, delete), configs (describe and the
// legacy whole-resource alter), partitions, the cluster, offsets (by time, DeleteRecords),
// and groups (list, describe, fetch, set and reset offsets, delete).

const assert = require('node:assert/strict')
const { ConfigResourceTypes, ConfigSource } = require('kafkajs')
const { cleanup, collect, kafkaFor, startBroker, stromTest, uniqueName, waitUntil } = require('./support')

/** The error types of a KafkaJS admin failure (one error, or an aggregate of several). */
const errorTypes = error => {
  // KafkaJS retries some refusals (UNKNOWN_TOPIC_OR_PARTITION) and then reports its own
  // error around the broker's.
  const inner = error.name === 'KafkaJSNumberOfRetriesExceeded' ? error.originalError ?? error.cause : error
  return (inner.errors ?? inner.groups?.map(g => g.error) ?? [inner]).map(e => e?.type ?? e?.name)
}

/** `name`'s configs as { key: [value, source] }. */
async function topicConfigs(admin, name) {
  const { resources } = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name }],
    includeSynonyms: false,
  })
  assert.equal(resources.length, 1)
  assert.equal(resources[0].errorCode, 0, resources[0].errorMessage)
  return Object.fromEntries(resources[0].configEntries.map(c => [c.configName, [c.configValue, c.configSource]]))
}

stromTest('topics: create, refuse, list, describe and alter configs, add partitions, delete', async t => {
  const broker = await startBroker(t, { 'auto.create.topics.enable': 'false' })
  const kafka = kafkaFor(broker, { retry: { initialRetryTime: 100, retries: 2 } })
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const [one, two] = [uniqueName('one'), uniqueName('two')]

  assert.equal(await admin.createTopics({
    topics: [
      { topic: one, numPartitions: 3, configEntries: [{ name: 'retention.ms', value: '3600000' }] },
      { topic: two, numPartitions: 1 },
    ],
  }), true)
  assert.equal(await admin.createTopics({ topics: [{ topic: one }] }), false, 'an existing topic')

  const bad = uniqueName('bad')
  await assert.rejects(admin.createTopics({ topics: [{ topic: bad, replicationFactor: 3 }] }),
    e => errorTypes(e).join() === 'INVALID_REPLICATION_FACTOR')
  await assert.rejects(
    admin.createTopics({ topics: [{ topic: bad, configEntries: [{ name: 'retention.ms', value: 'soon' }] }] }),
    e => errorTypes(e).join() === 'INVALID_CONFIG')
  assert.equal(await admin.createTopics({ validateOnly: true, waitForLeaders: false, topics: [{ topic: bad }] }), true)
  const listed = await admin.listTopics()
  assert.ok(listed.includes(one) && listed.includes(two), `${listed}`)
  assert.ok(!listed.includes(bad), 'refused and validate-only topics do not exist')

  const { topics: [meta] } = await admin.fetchTopicMetadata({ topics: [one] })
  assert.equal(meta.name, one)
  assert.deepEqual(meta.partitions.map(p => [p.partitionId, p.partitionErrorCode, p.leader, p.replicas, p.isr]).sort(),
    [[0, 0, 1, [1], [1]], [1, 0, 1, [1], [1]], [2, 0, 1, [1], [1]]])

  let configs = await topicConfigs(admin, one)
  assert.deepEqual(configs['retention.ms'], ['3600000', ConfigSource.TOPIC_CONFIG])
  assert.equal(configs['cleanup.policy'][0], 'delete')
  assert.notEqual(configs['cleanup.policy'][1], ConfigSource.TOPIC_CONFIG)

  // AlterConfigs (the legacy whole-resource form) replaces every dynamic config of the topic.
  await admin.alterConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: one, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }],
  })
  configs = await topicConfigs(admin, one)
  assert.deepEqual(configs['cleanup.policy'], ['compact', ConfigSource.TOPIC_CONFIG])
  assert.deepEqual(configs['retention.ms'][0], '604800000', 'retention.ms back to its default')
  await assert.rejects(admin.alterConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: one, configEntries: [{ name: 'cleanup.policy', value: 'shred' }] }],
  }), e => /INVALID_CONFIG|INVALID_REQUEST/.test(errorTypes(e).join() + e.message))
  assert.deepEqual((await topicConfigs(admin, one))['cleanup.policy'][0], 'compact', 'a refused alter changes nothing')

  // Partitions: grow to 5; a decrease is refused.
  await admin.createPartitions({ topicPartitions: [{ topic: one, count: 5 }] })
  await assert.rejects(admin.createPartitions({ topicPartitions: [{ topic: one, count: 2 }] }),
    e => errorTypes(e).join() === 'INVALID_PARTITIONS')
  await waitUntil('5 partitions', async () => {
    const { topics: [m] } = await admin.fetchTopicMetadata({ topics: [one] })
    return m.partitions.length === 5
  })
  const producer = cleanup(t, kafka.producer())
  await producer.connect()
  // (The topic is compacted now: its records need keys.)
  const [written] = await producer.send({ topic: one, messages: [{ partition: 4, key: 'k', value: 'new partition' }] })
  assert.deepEqual([written.partition, written.baseOffset], [4, '0'])

  await admin.deleteTopics({ topics: [one, two] })
  await waitUntil('the topics gone', async () => {
    const now = await admin.listTopics()
    return !now.includes(one) && !now.includes(two)
  })
  await assert.rejects(admin.deleteTopics({ topics: [one] }), e => errorTypes(e).join() === 'UNKNOWN_TOPIC_OR_PARTITION')
})

stromTest('cluster, offsets by time and DeleteRecords', async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker)
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const cluster = await admin.describeCluster()
  assert.equal(cluster.controller, 1)
  assert.ok(cluster.clusterId)
  assert.deepEqual(cluster.brokers, [{ nodeId: 1, host: '127.0.0.1', port: broker.port }])

  const topic = uniqueName('t')
  await admin.createTopics({ topics: [{ topic }] })
  const producer = cleanup(t, kafka.producer())
  await producer.connect()
  const base = Date.now() - 3_600_000
  await producer.send({
    topic,
    messages: [...Array(10).keys()].map(i => ({ value: `v${i}`, timestamp: String(base + 1000 * i) })),
  })
  assert.deepEqual(await admin.fetchTopicOffsets(topic), [{ partition: 0, offset: '10', high: '10', low: '0' }])
  assert.deepEqual(await admin.fetchTopicOffsetsByTimestamp(topic, base + 3500), [{ partition: 0, offset: '4' }])
  assert.deepEqual(await admin.fetchTopicOffsetsByTimestamp(topic, base + 60_000), [{ partition: 0, offset: '10' }])

  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '4' }] })
  assert.deepEqual(await admin.fetchTopicOffsets(topic), [{ partition: 0, offset: '10', high: '10', low: '4' }])
  const consumer = cleanup(t, kafka.consumer({ groupId: uniqueName('g'), maxWaitTimeInMs: 500 }))
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const got = await collect(consumer, ms => ms.length >= 6)
  assert.deepEqual(got.map(m => `${m.offset}=${m.value}`), [4, 5, 6, 7, 8, 9].map(i => `${i}=v${i}`))
})

stromTest('groups: list, describe, fetch, set and reset offsets, delete', async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker)
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const topic = uniqueName('t')
  const groupId = uniqueName('g')
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] })
  const producer = cleanup(t, kafka.producer())
  await producer.connect()
  await producer.send({ topic, messages: [...Array(10).keys()].map(i => ({ partition: i % 2, value: `v${i}` })) })

  const options = { groupId, maxWaitTimeInMs: 500, heartbeatInterval: 500, sessionTimeout: 6000 }
  const member = cleanup(t, kafka.consumer(options))
  await member.connect()
  await member.subscribe({ topics: [topic], fromBeginning: true })
  await collect(member, ms => ms.length >= 10)
  await waitUntil('the commits of all 10', async () => {
    const [entry] = await admin.fetchOffsets({ groupId, topics: [topic] })
    return entry.partitions.every(p => p.offset === '5')
  })

  const { groups: [described] } = await admin.describeGroups([groupId])
  assert.equal(described.errorCode, 0)
  assert.equal(described.state, 'Stable')
  assert.equal(described.protocolType, 'consumer')
  assert.equal(described.members.length, 1)
  assert.equal(described.members[0].clientId, 'strom-js-test')
  assert.deepEqual((await admin.listGroups()).groups.filter(g => g.groupId === groupId), [{ groupId, protocolType: 'consumer' }])
  await assert.rejects(admin.deleteGroups([groupId]), e => errorTypes(e).join() === 'NON_EMPTY_GROUP')

  await member.disconnect()
  await waitUntil('the group empty', async () => (await admin.describeGroups([groupId])).groups[0].state === 'Empty')

  // Reset both partitions, then set one; a new member starts there. (Each call runs a
  // KafkaJS consumer of its own that waits out one 5 s fetch: two calls, not more.)
  // KafkaJS resets by committing its "earliest" sentinel, -2, which the broker keeps as sent
  // (as Kafka does); KafkaJS's consumers treat a negative commit as none and start where
  // their own fromBeginning says.
  await admin.resetOffsets({ groupId, topic, earliest: true })
  assert.deepEqual((await admin.fetchOffsets({ groupId, topics: [topic] }))[0].partitions.map(p => [p.partition, p.offset]).sort(),
    [[0, '-2'], [1, '-2']])
  await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '3' }] })
  assert.deepEqual((await admin.fetchOffsets({ groupId, topics: [topic] }))[0].partitions.map(p => [p.partition, p.offset]).sort(),
    [[0, '3'], [1, '-2']])
  const again = cleanup(t, kafka.consumer(options))
  await again.connect()
  await again.subscribe({ topics: [topic], fromBeginning: true })
  const reread = await collect(again, ms => ms.length >= 7)
  assert.deepEqual(reread.map(m => `${m.partition}/${m.offset}`).sort(),
    ['0/3', '0/4', '1/0', '1/1', '1/2', '1/3', '1/4'])
  await again.disconnect()
  await waitUntil('the group empty again', async () => (await admin.describeGroups([groupId])).groups[0].state === 'Empty')

  assert.deepEqual(await admin.deleteGroups([groupId]), [{ groupId, errorCode: 0 }])
  assert.ok(!(await admin.listGroups()).groups.some(g => g.groupId === groupId), 'the deleted group is not listed')
  assert.deepEqual((await admin.fetchOffsets({ groupId, topics: [topic] }))[0].partitions.map(p => p.offset), ['-1', '-1'])
  await assert.rejects(admin.deleteGroups([groupId]), e => errorTypes(e).join() === 'GROUP_ID_NOT_FOUND')
})
