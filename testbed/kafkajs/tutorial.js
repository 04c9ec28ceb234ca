// The example every kafkajs tutorial starts with: a producer sending keyed
// JSON events to `user-events`, and a consumer in group `analytics-group`
// printing partition, offset and event in eachMessage. The only change is
// that the broker address can come from FERRY_BROKER (tests pick a free
// port); without it, it is localhost:9092 as in the tutorial.
const { Kafka } = require('kafkajs')

const kafka = new Kafka({
  clientId: 'my-app',
  brokers: [process.env.FERRY_BROKER || 'localhost:9092'],
})

const producer = kafka.producer()
const consumer = kafka.consumer({ groupId: 'analytics-group' })
const total = Number(process.env.EVENTS || 30)

const run = async () => {
  await producer.connect()
  for (let i = 0; i < total; i++) {
    const userId = `user-${i % 5}`
    await producer.send({
      topic: 'user-events',
      messages: [{ key: userId, value: JSON.stringify({ userId, action: 'click', seq: i }) }],
    })
  }
  await producer.disconnect()

  await consumer.connect()
  await consumer.subscribe({ topic: 'user-events', fromBeginning: true })
  let seen = 0
  await new Promise((resolve) => {
    consumer.run({
      eachMessage: async ({ topic, partition, message }) => {
        console.log(JSON.stringify({ partition, offset: message.offset, key: message.key.toString(), event: JSON.parse(message.value.toString()) }))
        if (++seen === total) resolve()
      },
    })
  })
  await consumer.disconnect()
}

run().catch((e) => { console.error(e); process.exit(1) })
