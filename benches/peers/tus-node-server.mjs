// @tus/server with @tus/file-store on 127.0.0.1: the Node.js reference tus server that broker-bench
// measures beside Broker. Usage: node tus-node-server.mjs PORT DIRECTORY (port 0 picks a free one).
import http from 'node:http'
import { Server } from '@tus/server'
import { FileStore } from '@tus/file-store'

const [port, directory] = process.argv.slice(2)
const tus = new Server({ path: '/files', datastore: new FileStore({ directory }) })
const server = http.createServer((req, res) => tus.handle(req, res))
server.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})
