// graphile-worker's side of bench/queue, measured the way queue_bench.cpp
// measures taskhost: enqueue rate (single and batched), drain rate with 1, 2
// and 4 worker processes in the default and in the perf-test configuration,
// idle enqueue->start latency.
// Usage: node bench.js CONNECTION_STRING [N]
const { fork } = require("child_process");
const { performance } = require("perf_hooks");
const { Pool } = require("pg");
const { run, runMigrations } = require("graphile-worker");

const now = () => performance.timeOrigin + performance.now();

// graphile-worker's own perfTest/graphile.config: 24 concurrent jobs, a
// local queue of 500, completions without batching delay.
const tuned = {
  concurrentJobs: 24,
  maxPoolSize: 25,
  localQueue: { size: 500, refetchDelay: { durationMs: 10 } },
  completeJobBatchDelay: 0,
  failJobBatchDelay: 0,
};

async function worker(connectionString, config) {
  // When the first job started and the last one ended, reported on request.
  let first = null;
  let last = null;
  process.on("message", (m) => m.report && process.send({ first, last }));
  const runner = await run({
    noHandleSignals: false,
    logger: undefined,
    taskList: {
      noop: async (payload) => {
        if (first === null) first = now();
        if (payload.t) process.send({ latency: now() - payload.t });
        last = now();
      },
    },
    preset: { worker: { connectionString, ...(config === "tuned" ? tuned : {}) } },
  });
  process.send({ ready: true });
  await runner.promise;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const [connectionString, nArg] = process.argv.slice(2);
  const n = parseInt(nArg || "20000", 10);
  const pool = new Pool({ connectionString, max: 2 });
  await runMigrations({ connectionString });
  const reset = () => pool.query("DELETE FROM graphile_worker._private_jobs");
  const pending = async () =>
    Number((await pool.query("SELECT count(*) FROM graphile_worker._private_jobs")).rows[0].count);
  const line = (what, value) => console.log(`graphile  ${what.padEnd(44)} ${value}`);

  await reset();
  let t = now();
  for (let i = 0; i < n; i++)
    await pool.query("SELECT graphile_worker.add_job('noop', '{}'::json)");
  line("enqueue, single submits", `${Math.round(n / ((now() - t) / 1000))} runs/s`.padStart(14));
  const batched = async () => {
    for (let done = 0; done < n; done += 1000)
      await pool.query(
        "SELECT graphile_worker.add_job('noop', '{}'::json) FROM generate_series(1, $1)",
        [Math.min(1000, n - done)]
      );
  };
  await reset();
  t = now();
  await batched();
  line("enqueue, batches of 1000", `${Math.round(n / ((now() - t) / 1000))} runs/s`.padStart(14));

  const spawn = async (config) => {
    const child = fork(__filename, ["--worker", connectionString, config], { silent: true });
    await new Promise((resolve) => child.on("message", (m) => m.ready && resolve()));
    return child;
  };
  const stop = (children) =>
    Promise.all(children.map((c) => new Promise((r) => (c.on("exit", r), c.kill("SIGTERM")))));

  for (const config of ["default", "tuned"]) {
    for (const workers of [1, 2, 4]) {
      await reset();
      await batched();
      const children = [];
      for (let i = 0; i < workers; i++) children.push(await spawn(config));
      while ((await pending()) > 0) await sleep(20);
      // From the first job started to the last one ended (node's start-up
      // is not counted), as queue_bench times taskhost.
      const spans = await Promise.all(
        children.map(
          (c) =>
            new Promise((resolve) => {
              c.on("message", (m) => m.first !== undefined && resolve(m));
              c.send({ report: true });
            })
        )
      );
      const begin = Math.min(...spans.filter((x) => x.first).map((x) => x.first));
      const end = Math.max(...spans.filter((x) => x.last).map((x) => x.last));
      const rate = Math.round(n / ((end - begin) / 1000));
      await stop(children);
      line(`drain, ${workers} process${workers > 1 ? "es" : ""}, ${config}`, `${rate} runs/s`.padStart(14));
    }
  }

  await reset();
  const child = await spawn("default");
  const latencies = [];
  child.on("message", (m) => m.latency !== undefined && latencies.push(m.latency));
  await sleep(500);
  for (let i = 0; i < 300; i++) {
    await pool.query("SELECT graphile_worker.add_job('noop', json_build_object('t', $1::float8))", [now()]);
    await sleep(10);
  }
  while (latencies.length < 300) await sleep(20);
  await stop([child]);
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
  line("idle enqueue->start latency", `median ${pct(0.5).toFixed(2)} ms, p99 ${pct(0.99).toFixed(2)} ms`);
  await pool.end();
}

if (process.argv[2] === "--worker") {
  worker(process.argv[3], process.argv[4]).catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
