// kafkajs through a leader kill (testbed/cluster_clients_test.go): a user's
// idempotent producer and consumer group with kafkajs' defaults, logging
// what kafkajs tells them as JSON lines on stdout for the test to check.
//
// MODE=produce: sends numbered records (value = sequence number, partition
// = seq % PARTITIONS) in batches with acks=-1 and idempotence until stdin
// closes; prints {"ack":seq,"p":partition,"o":offset} for each record
// kafkajs acknowledged and {"fail":[seqs],"err":msg} for a batch it failed.
// MODE=consume: a consumer in GROUP reads TOPIC (fromBeginning: where the
// group has no offset) until it has seen offset ENDS[p]-1 of every
// partition, printing {"p":partition,"o":offset,"v":value} per record, then
// disconnects, committing what it read.
const { Kafka, logLevel } = require('kafkajs')

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

const kafka = new Kafka({
  clientId: 'ferry-failover',
  brokers: process.env.FERRY_BROKERS.split(','),
  logLevel: logLevel.WARN,
})
const topic = process.env.TOPIC
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')

const produce = async () => {
  const partitions = Number(process.env.PARTITIONS || 3)
  const batch = Number(process.env.BATCH || 30)
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  let open = true
  process.stdin.on('end', () => { open = false })
  process.stdin.resume()
  // One send() per partition: kafkajs 2.2.4 resolves a send() spanning
  // several partitions without ever sending those whose leader moved, on a
  // retry, to a broker that had already answered for another partition of
  // the same send (its responsePerBroker map: kafkajs issues 1303, PR 1798;
  // against Kafka too). The result then has no entry for them: they are
  // reported here as {"unreported":[seqs]}, neither acknowledged nor failed.
  const sendOne = async (messages) => {
    try {
      const res = await producer.send({ topic, acks: -1, messages })
      const r = res.find((x) => x.partition === messages[0].partition && x.errorCode === 0)
      if (!r) {
        out({ unreported: messages.map((m) => Number(m.value)) })
        return
      }
      messages.forEach((m, k) => out({ ack: Number(m.value), p: m.partition, o: Number(r.baseOffset) + k }))
    } catch (e) {
      out({ fail: messages.map((m) => Number(m.value)), err: String(e) })
    }
  }
  let seq = 0
  while (open) {
    const perPartition = []
    for (let p = 0; p < partitions; p++) perPartition.push([])
    for (let i = 0; i < batch; i++, seq++) {
      perPartition[seq % partitions].push({ partition: seq % partitions, value: String(seq) })
    }
    await Promise.all(perPartition.filter((ms) => ms.length > 0).map(sendOne))
    await new Promise((r) => setTimeout(r, 5)) // a steady load, not a flood
  }
  await producer.disconnect()
}

const consume = async () => {
  const ends = JSON.parse(process.env.ENDS)
  const need = new Set(Object.keys(ends).filter((p) => ends[p] > 0).map(Number))
  const consumer = kafka.consumer({ groupId: process.env.GROUP })
  // A crash kafkajs does not restart from (e.g. a batch it cannot decode)
  // stops the consumer; without this the process would then exit 0, the
  // promise below never settled, having read nothing.
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (!payload.restart) {
      console.error(payload.error)
      process.exit(1)
    }
  })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await new Promise((resolve) => {
    if (need.size === 0) resolve()
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        const o = Number(message.offset)
        out({ p: partition, o, v: Number(message.value.toString()) })
        if (o >= ends[partition] - 1) {
          need.delete(partition)
          if (need.size === 0) resolve()
        }
      },
    })
  })
  await consumer.disconnect()
}

const modes = { produce, consume }
modes[process.env.MODE]().catch((e) => { console.error(e); process.exit(1) })
