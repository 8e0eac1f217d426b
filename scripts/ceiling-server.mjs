// The platform's ceiling for the benchmark: a minimal Node.js line server. It frames requests on '\n'
// and answers each with a fixed reply (`VALUE <100 x>` to GET, `OK` to anything else), one write per
// read, no parsing and no storage. What MerkleKV adds on top of this is the cost of being a database.
//
//   node scripts/ceiling-server.mjs <port>
import { createServer } from 'node:net';

const port = Number(process.argv[2] ?? 7878);
const VALUE = Buffer.from(`VALUE ${'x'.repeat(100)}\r\n`);
const OK = Buffer.from('OK\r\n');

createServer({ noDelay: true }, (socket) => {
  let carried = -1; // first byte of a line begun in an earlier chunk, or -1
  socket.on('data', (chunk) => {
    const replies = [];
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      const first = carried !== -1 ? carried : chunk[start];
      replies.push(first === 0x47 /* G */ ? VALUE : OK);
      carried = -1;
      start = nl + 1;
    }
    if (start < chunk.length && carried === -1) carried = chunk[start];
    if (replies.length > 0) socket.write(replies.length === 1 ? replies[0] : Buffer.concat(replies));
  });
  socket.on('error', () => socket.destroy());
}).listen(port, '127.0.0.1');
