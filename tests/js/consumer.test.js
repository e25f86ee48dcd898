'use strict'
// KafkaJS consumer groups (the classic protocol; KafkaJS has no other): reading in a group,
// committing, resuming from committed offsets after a consumer and a broker restart, members
// sharing partitions.

const assert = require('node:assert/strict')
const { AssignerProtocol } = require('kafkajs')
const { byPlace, cleanup, collect, describe, kafkaFor, startBroker, stromTest, uniqueName, waitUntil } = require('./support')

const CONSUMER_OPTIONS = { maxWaitTimeInMs: 500, heartbeatInterval: 500, sessionTimeout: 6000 }

/** Writes `n` messages "<label>-<i>" round-robin over `partitions` partitions. */
async function produceRound(producer, topic, label, n, partitions = 3) {
  await producer.send({
    topic,
    messages: [...Array(n).keys()].map(i => ({ partition: i % partitions, value: `${label}-${i}` })),
  })
}

/** Checks `messages` are exactly produceRound's, each once, each partition's from `first` on. */
function checkRound(messages, label, n, first, partitions = 3) {
  assert.equal(messages.length, n, `messages ${describe(messages)}`)
  const values = messages.map(m => m.value).sort()
  assert.deepEqual(values, [...Array(n).keys()].map(i => `${label}-${i}`).sort())
  for (let p = 0; p < partitions; p++) {
    const offsets = messages.filter(m => m.partition === p).map(m => m.offset)
    assert.deepEqual(offsets, offsets.map((_, i) => first + i), `offsets of partition ${p}`)
  }
}

/** The group's committed offset per partition of `topic`, as numbers (-1: none). */
async function committed(admin, groupId, topic) {
  const [entry] = await admin.fetchOffsets({ groupId, topics: [topic] })
  return Object.fromEntries(entry.partitions.map(p => [p.partition, Number(p.offset)]))
}

/** Members of a described group with the partitions of `topic` each was assigned. */
async function describeMembers(admin, groupId, topic) {
  const { groups: [group] } = await admin.describeGroups([groupId])
  const members = group.members.map(m => {
    const assignment = AssignerProtocol.MemberAssignment.decode(m.memberAssignment)
    return { clientId: m.clientId, partitions: [...(assignment?.assignment[topic] ?? [])].sort() }
  })
  return { state: group.state, protocolType: group.protocolType, protocol: group.protocol, members }
}

stromTest('a member reads, commits and leaves; the next member resumes from the commits', async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker)
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const topic = uniqueName('t')
  const groupId = uniqueName('g')
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] })
  const producer = cleanup(t, kafka.producer())
  await producer.connect()
  await produceRound(producer, topic, 'first', 30)

  const first = cleanup(t, kafka.consumer({ groupId, ...CONSUMER_OPTIONS }))
  await first.connect()
  await first.subscribe({ topics: [topic], fromBeginning: true })
  const got = await collect(first, ms => ms.length >= 30, { runOptions: { autoCommit: false } })
  checkRound(got.sort(byPlace), 'first', 30, 0)
  assert.deepEqual(await committed(admin, groupId, topic), { 0: -1, 1: -1, 2: -1 }, 'nothing committed yet')
  await first.commitOffsets([0, 1, 2].map(partition => ({ topic, partition, offset: '10' })))
  assert.deepEqual(await committed(admin, groupId, topic), { 0: 10, 1: 10, 2: 10 })

  const view = await describeMembers(admin, groupId, topic)
  assert.equal(view.state, 'Stable')
  assert.equal(view.protocolType, 'consumer')
  assert.equal(view.protocol, 'RoundRobinAssigner')
  assert.deepEqual(view.members.map(m => [m.clientId, m.partitions]), [['strom-js-test', [0, 1, 2]]])
  const { groups } = await admin.listGroups()
  assert.deepEqual(groups.filter(g => g.groupId === groupId), [{ groupId, protocolType: 'consumer' }])

  await first.disconnect()
  await waitUntil('the group empty', async () => (await describeMembers(admin, groupId, topic)).state === 'Empty')

  await produceRound(producer, topic, 'second', 15)
  const second = cleanup(t, kafka.consumer({ groupId, ...CONSUMER_OPTIONS }))
  await second.connect()
  await second.subscribe({ topics: [topic], fromBeginning: true })
  const resumed = await collect(second, ms => ms.length >= 15, { runOptions: { autoCommit: false } })
  checkRound(resumed.sort(byPlace), 'second', 15, 10)
})

stromTest('resume at a partial commit; auto-commit on leave; commits survive a broker SIGKILL', async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker)
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const topic = uniqueName('t')
  const groupId = uniqueName('g')
  await admin.createTopics({ topics: [{ topic }] })
  const producer = cleanup(t, kafka.producer())
  await producer.connect()
  await producer.send({ topic, messages: [...Array(20).keys()].map(i => ({ value: `v${i}` })) })

  const first = cleanup(t, kafka.consumer({ groupId, ...CONSUMER_OPTIONS }))
  await first.connect()
  await first.subscribe({ topics: [topic], fromBeginning: true })
  const all = await collect(first, ms => ms.length >= 20, { runOptions: { autoCommit: false } })
  assert.deepEqual(all.map(m => m.offset), [...Array(20).keys()])
  // Commit only the first 12 (the next offset to read is 12).
  await first.commitOffsets([{ topic, partition: 0, offset: '12' }])
  await first.disconnect()

  // Auto-commit (KafkaJS's default) commits what was read, at the latest when leaving.
  const second = cleanup(t, kafka.consumer({ groupId, ...CONSUMER_OPTIONS }))
  await second.connect()
  await second.subscribe({ topics: [topic], fromBeginning: true })
  const rest = await collect(second, ms => ms.length >= 8)
  assert.deepEqual(rest.map(m => `${m.offset}=${m.value}`), [...Array(8).keys()].map(i => `${12 + i}=v${12 + i}`))
  await second.disconnect()
  assert.deepEqual(await committed(admin, groupId, topic), { 0: 20 })

  // The broker dies without a clean shutdown; the commit (answered, so in the log) stays.
  await broker.kill()
  await broker.start()
  const afterAdmin = cleanup(t, kafka.admin())
  await afterAdmin.connect()
  await waitUntil('the committed offset after the restart', async () => (await committed(afterAdmin, groupId, topic))[0] === 20)
  const afterProducer = cleanup(t, kafka.producer())
  await afterProducer.connect()
  await afterProducer.send({ topic, messages: [{ value: 'v20' }, { value: 'v21' }] })
  const third = cleanup(t, kafka.consumer({ groupId, ...CONSUMER_OPTIONS }))
  await third.connect()
  await third.subscribe({ topics: [topic], fromBeginning: true })
  const more = await collect(third, ms => ms.length >= 2)
  assert.deepEqual(more.map(m => `${m.offset}=${m.value}`), ['20=v20', '21=v21'])
})

stromTest('two members split the partitions and read every message once', async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker)
  const admin = cleanup(t, kafka.admin())
  await admin.connect()
  const topic = uniqueName('t')
  const groupId = uniqueName('g')
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] })

  const byMember = [[], []]
  for (const [i, received] of byMember.entries()) {
    const consumer = cleanup(t, kafka.consumer({ groupId, ...CONSUMER_OPTIONS }))
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        received.push({ member: i, partition, offset: Number(message.offset), value: message.value.toString() })
      },
    })
  }
  let last
  await waitUntil(() => `two members sharing 3 partitions: ${JSON.stringify(last)}`, async () => {
    last = await describeMembers(admin, groupId, topic)
    const partitions = last.members.flatMap(m => m.partitions).sort()
    return last.state === 'Stable' && last.members.length === 2 && last.members.every(m => m.partitions.length > 0) &&
      partitions.join() === '0,1,2'
  })

  const producer = cleanup(t, kafka.producer())
  await producer.connect()
  await produceRound(producer, topic, 'r', 60)
  await waitUntil('60 messages', () => byMember[0].length + byMember[1].length >= 60)
  const owner = {}
  for (const m of [...byMember[0], ...byMember[1]]) {
    assert.equal(owner[m.partition] ?? m.member, m.member, `partition ${m.partition} read by both members`)
    owner[m.partition] = m.member
  }
  assert.ok(byMember[0].length > 0 && byMember[1].length > 0, 'each member read something')
  checkRound([...byMember[0], ...byMember[1]].sort(byPlace), 'r', 60, 0)
})

stromTest('seek re-reads from an earlier offset', async t => {
  const broker = await startBroker(t)
  const kafka = kafkaFor(broker)
  const topic = uniqueName('t')
  const producer = cleanup(t, kafka.producer({ allowAutoTopicCreation: true }))
  await producer.connect()
  await producer.send({ topic, messages: [...Array(5).keys()].map(i => ({ value: `v${i}` })) })
  const consumer = cleanup(t, kafka.consumer({ groupId: uniqueName('g'), ...CONSUMER_OPTIONS }))
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  let seeked = false
  const got = await collect(consumer, ms => {
    if (!seeked && ms.length === 5) {
      seeked = true
      consumer.seek({ topic, partition: 0, offset: '2' })
    }
    return ms.length >= 8
  })
  assert.deepEqual(got.map(m => m.offset), [0, 1, 2, 3, 4, 2, 3, 4])
})
