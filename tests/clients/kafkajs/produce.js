// An intake system that is not written in Python files a fraud report on Stopper's reports
// topic, as README "Reports on Kafka from any language" shows: the key is the report_id, the
// value the JSON report (FraudReportV1), amounts as decimal strings with the currency's minor
// digits. Like many systems, it keeps money in integer minor units (fen) and writes them as
// decimal strings only on the wire.
//
//   node produce.js --brokers 127.0.0.1:9092 --topic stopper.reports --report-id R-1 \
//        --agency PSB-X --transfer BK01:6222000011112222:4554000 [--transfer ...]
//
// Prints one JSON line: where the record went ({topic, partition, offset, report_id}).
"use strict";

const { Kafka, logLevel } = require("kafkajs");

// 4554000 fen -> "45540.00": exact, whatever the amount (no binary floating point).
function decimalAmount(minor, digits = 2) {
  const text = BigInt(minor).toString().padStart(digits + 1, "0");
  return `${text.slice(0, -digits)}.${text.slice(-digits)}`;
}

function parseArgs(argv) {
  const args = { transfers: [] };
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${name} needs a value`);
    if (name === "--transfer") {
      const [institution, account, minor] = value.split(":");
      args.transfers.push({ institution, account, minor: Number.parseInt(minor, 10) });
    } else {
      args[name.replace(/^--/, "").replace(/-/g, "_")] = value;
    }
  }
  for (const required of ["brokers", "topic", "report_id", "agency"]) {
    if (!args[required]) throw new Error(`--${required.replace(/_/g, "-")} is required`);
  }
  if (args.transfers.length === 0) throw new Error("at least one --transfer is required");
  return args;
}

function report(args, now) {
  const minutesAgo = (n) => new Date(now.getTime() - n * 60_000).toISOString();
  return {
    schema_version: 1,
    report_id: args.report_id,
    agency: { code: args.agency, name: "Intake written in JavaScript" },
    reported_at: now.toISOString(),
    victims: [{ victim_id: "V1" }],
    transfers: args.transfers.map((t, index) => ({
      victim_id: "V1",
      victim_account: { institution_code: "BK02", account_number: `62170000${1000 + index}` },
      receiving_account: { institution_code: t.institution, account_number: t.account },
      amount: decimalAmount(t.minor),
      currency: "CNY",
      transferred_at: minutesAgo(30 - index),
      channel: "mobile_banking",
      reference: `transfer ${index + 1}`,
    })),
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const kafka = new Kafka({
    clientId: "intake-js",
    brokers: args.brokers.split(","),
    logLevel: logLevel.WARN,
    retry: { retries: 8 },
  });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    const body = report(args, new Date());
    const [sent] = await producer.send({
      topic: args.topic,
      acks: -1, // every in-sync replica: the report is not lost once this returns
      messages: [{ key: body.report_id, value: JSON.stringify(body) }],
    });
    console.log(
      JSON.stringify({
        topic: sent.topicName,
        partition: sent.partition,
        offset: sent.baseOffset,
        report_id: body.report_id,
      }),
    );
  } finally {
    await producer.disconnect();
  }
}

main().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});
