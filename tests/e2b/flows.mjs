// E2B's documented flows, run by the pinned npm `e2b` SDK against berth (tests/api/e2b.rs starts it with
// NODE_PATH at the SDK's node_modules). Prints `ok` at the end; any failed step throws.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'

const require = createRequire(process.env.E2B_JS_DIR + '/package.json')
const { Sandbox, CommandExitError } = require('e2b')

const step = (name) => console.log(`-- ${name}`)

step('create')
const sbx = await Sandbox.create('base', { timeoutMs: 120_000, metadata: { suite: 'berth-js' }, envs: { GREETING: 'hi' } })

step('run')
let r = await sbx.commands.run('echo $GREETING; echo err >&2')
assert.equal(r.stdout, 'hi\n')
assert.equal(r.stderr, 'err\n')
const seen = []
await sbx.commands.run('for i in 1 2 3; do echo l$i; sleep 0.2; done', { onStdout: (d) => seen.push(d) })
assert.equal(seen.join(''), 'l1\nl2\nl3\n')
await assert.rejects(sbx.commands.run('exit 4'), (e) => e instanceof CommandExitError && e.exitCode === 4)

step('background and connect')
const h = await sbx.commands.run('sleep 1; echo later', { background: true })
const again = await sbx.commands.connect(h.pid)
assert.equal((await again.wait()).stdout, 'later\n')

step('files and a streaming watch')
const events = []
const watcher = await sbx.files.watchDir('/home/user', (e) => events.push(e))
await sbx.files.write('/home/user/hello.txt', 'hello js')
assert.equal(await sbx.files.read('/home/user/hello.txt'), 'hello js')
const names = (await sbx.files.list('/home/user')).map((e) => e.name)
assert.ok(names.includes('hello.txt'), names)
for (let i = 0; i < 50 && !events.some((e) => e.name === 'hello.txt'); i++) {
  await new Promise((res) => setTimeout(res, 100))
}
await watcher.stop()
assert.ok(events.some((e) => e.name === 'hello.txt'), JSON.stringify(events))

step('pty')
const out = []
const t = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => out.push(Buffer.from(d)) })
await sbx.pty.sendInput(t.pid, new TextEncoder().encode('echo js-pty-$((6*7))\nexit\n'))
await t.wait()
assert.ok(Buffer.concat(out).toString().includes('js-pty-42'))

step('list, timeout, info')
const listed = await Sandbox.list({ query: { metadata: { suite: 'berth-js' } } }).nextItems()
assert.deepEqual(listed.map((s) => s.sandboxId), [sbx.sandboxId])
await sbx.setTimeout(90_000)
const info = await sbx.getInfo()
assert.deepEqual(info.metadata, { suite: 'berth-js' })

step('pause and connect keep files')
await sbx.pause()
const back = await Sandbox.connect(sbx.sandboxId)
assert.equal(await back.files.read('/home/user/hello.txt'), 'hello js')

step('kill')
await back.kill()
console.log('ok')
