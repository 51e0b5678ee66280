// Drives the real @supabase/realtime-js (pinned in package.json) for the Python tests
// (tests/rtjs.py): commands come as JSON lines on stdin, and everything the clients see goes out
// as JSON lines on stdout. Node 20 has no global WebSocket, so `ws` is passed as the transport.
import { createInterface } from 'node:readline'
import { RealtimeClient } from '@supabase/realtime-js'
import WebSocket from 'ws'

const clients = new Map() // id -> { client, channel }
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

function bind(id, channel) {
  channel
    .on('presence', { event: 'sync' }, () => emit({ id, ev: 'sync', state: channel.presenceState() }))
    .on('presence', { event: 'join' }, ({ key, newPresences }) => emit({ id, ev: 'join', key, presences: newPresences }))
    .on('presence', { event: 'leave' }, ({ key, leftPresences }) => emit({ id, ev: 'leave', key, presences: leftPresences }))
    .on('broadcast', { event: '*' }, (msg) => emit({ id, ev: 'broadcast', event: msg.event, payload: msg.payload }))
    .on('system', {}, (payload) => emit({ id, ev: 'system', payload }))
}

const ops = {
  client({ id, url, apikey, token, vsn, heartbeatIntervalMs }) {
    const client = new RealtimeClient(url, {
      params: { apikey },
      transport: WebSocket,
      ...(vsn ? { vsn } : {}),
      ...(heartbeatIntervalMs ? { heartbeatIntervalMs } : {}),
      heartbeatCallback: (status) => emit({ id, ev: 'heartbeat', status }),
      reconnectAfterMs: () => 200,
    })
    if (token) client.setAuth(token)
    clients.set(id, { client, channel: null })
    return true
  },
  channel({ id, topic, config }) {
    const entry = clients.get(id)
    const channel = entry.client.channel(topic, { config: config ?? {} })
    entry.channel = channel
    bind(id, channel)
    channel.subscribe((status, err) => emit({ id, ev: 'status', status, err: err ? String(err.message ?? err) : null }))
    return true
  },
  track: ({ id, payload }) => clients.get(id).channel.track(payload),
  untrack: ({ id }) => clients.get(id).channel.untrack(),
  send: ({ id, event, payload }) => clients.get(id).channel.send({ type: 'broadcast', event, payload }),
  setAuth: async ({ id, token }) => { await clients.get(id).client.setAuth(token); return true },
  leave: ({ id }) => clients.get(id).client.removeChannel(clients.get(id).channel),
  presence: ({ id }) => clients.get(id).channel.presenceState(),
  state: ({ id }) => ({ socket: clients.get(id).client.connectionState(), channel: clients.get(id).channel?.state }),
  disconnect: async ({ id }) => { await clients.get(id).client.disconnect(); return true },
}

const lines = createInterface({ input: process.stdin })
lines.on('line', async (line) => {
  const cmd = JSON.parse(line)
  try {
    const value = await ops[cmd.op](cmd)
    emit({ req: cmd.req, ok: true, value })
  } catch (err) {
    emit({ req: cmd.req, ok: false, error: String(err?.stack ?? err) })
  }
})
lines.on('close', () => process.exit(0))
emit({ ev: 'ready' })
