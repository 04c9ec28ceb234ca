// kafkajs's admin client against ferry, for the APIs issue 17 added:
// deleteTopicRecords (DeleteRecords), describeConfigs and alterConfigs
// (DescribeConfigs, AlterConfigs) on a topic and on the broker. It prints
// one JSON line of what kafkajs returned; ingest/kafka's
// TestKafkajsAdmin checks it.
const { Kafka, ConfigResourceTypes, logLevel } = require('kafkajs')

const kafka = new Kafka({
  clientId: 'ferry-admin',
  brokers: [process.env.FERRY_BROKER || 'localhost:9092'],
  logLevel: logLevel.NOTHING,
  retry: { retries: 2, initialRetryTime: 100 },
})
const admin = kafka.admin()
const producer = kafka.producer()
const topic = 'js-admin'
const broker = process.env.FERRY_NODE_ID || '0'

// The broker's error types of a failure (kafkajs wraps them once retries
// end, in cause).
const errorOf = (e) => {
  for (let err = e; err; err = err.cause === err ? null : err.cause) {
    if (err.partitions) return err.partitions.map((p) => p.error.type)
    if (err.type) return err.type
  }
  return e.message
}

const run = async () => {
  const out = {}
  await admin.connect()
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }] })
  await producer.connect()
  for (let i = 0; i < 10; i++) {
    await producer.send({ topic, messages: [{ value: `v${i}` }] })
  }
  await producer.disconnect()

  await admin.fetchTopicMetadata({ topics: [topic] }) // the admin's leaders of the new topic
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '4' }] })
  out.afterDelete = await admin.fetchTopicOffsets(topic)
  try {
    await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '99' }] })
    out.pastEnd = 'accepted'
  } catch (e) {
    out.pastEnd = errorOf(e)
  }

  await admin.alterConfigs({
    resources: [{
      type: ConfigResourceTypes.TOPIC, name: topic,
      configEntries: [{ name: 'retention.ms', value: '3600000' }, { name: 'compression.type', value: 'zstd' }],
    }],
  })
  out.topicConfigs = (await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms', 'compression.type', 'cleanup.policy'] }],
    includeSynonyms: true,
  })).resources[0].configEntries

  await admin.alterConfigs({
    resources: [{ type: ConfigResourceTypes.BROKER, name: broker, configEntries: [{ name: 'log.retention.ms', value: '60000' }] }],
  })
  out.brokerConfigs = (await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.BROKER, name: broker, configNames: ['log.retention.ms', 'num.partitions'] }],
    includeSynonyms: false,
  })).resources[0].configEntries
  try {
    await admin.alterConfigs({
      resources: [{ type: ConfigResourceTypes.BROKER, name: broker, configEntries: [{ name: 'num.partitions', value: '9' }] }],
    })
    out.readOnly = 'accepted'
  } catch (e) {
    out.readOnly = errorOf(e)
  }
  await admin.disconnect()
  console.log(JSON.stringify(out))
}

run().catch((e) => { console.error(e); process.exit(1) })
