// BullMQ at a steady low rate: one worker (concurrency 50, as in the
// side-by-side bench), one `add` every 1000/RATE ms, then Redis' commands
// and CPU per job from the moment the worker is ready.
// usage: node bullmq_idle.js PORT N RATE KEEP   (KEEP 1: completed jobs kept,
// as records; 0: removeOnComplete, as in the side-by-side bench)
const { Queue, Worker } = require('bullmq');
const Redis = require('ioredis');
const [port, n, rate] = process.argv.slice(2, 5).map(Number);
const keep = process.argv[5] === '1';
const connection = { host: '127.0.0.1', port };
const cpu = async (r) => {
  const info = await r.info('cpu');
  return ['used_cpu_user', 'used_cpu_sys']
    .map((k) => Number(info.match(new RegExp(k + ':([0-9.]+)'))[1]))
    .reduce((a, b) => a + b);
};
(async () => {
  const r = new Redis(port);
  const name = 'idle' + Date.now();
  const q = new Queue(name, { connection });
  let done = 0;
  const w = new Worker(name, async (job) => job.data.i, { connection, concurrency: 50 });
  await w.waitUntilReady();
  await new Promise((ok) => setTimeout(ok, 500));
  const finished = new Promise((ok) => w.on('completed', () => { if (++done === n) ok(); }));
  await r.config('RESETSTAT');
  const cpu0 = await cpu(r);
  const opts = keep ? { removeOnComplete: { age: 86400, count: 100000 } } : { removeOnComplete: true };
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    await q.add('noop', { i }, opts);
    const wait = t0 + ((i + 1) * 1000) / rate - Date.now();
    if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));
  }
  await finished;
  const cpu1 = await cpu(r);
  const stats = await r.info('commandstats');
  const calls = [...stats.matchAll(/calls=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  console.log(JSON.stringify({
    system: keep ? 'bullmq (completed kept)' : 'bullmq (removeOnComplete)', n, rate,
    commands_per_job: +(calls / n).toFixed(2),
    redis_cpu_us_per_job: +(((cpu1 - cpu0) * 1e6) / n).toFixed(1),
  }));
  await w.close(); await q.obliterate({ force: true }); await q.close(); r.disconnect();
  process.exit(0);
})();
