// Uploads a file to Broker with tus-js-client (Node).
//
// usage: node tus_js_upload.mjs BASE_URL TOKEN FILE_TRANSFER_ID FILE CHUNK_SIZE (abort-half | resume | whole)
//
// abort-half: creates the upload and aborts once half of it is acknowledged, as a client that dies.
// resume:     a new client instance (given the upload URL) continues at the server's offset and finishes.
// whole:      one client uploads everything.
// parallel:   four partial uploads in parallel, joined by a final upload (tus concatenation).
// Prints the offset reached.
import * as tus from 'tus-js-client';
import fs from 'node:fs';

const [base, token, id, path, chunkSize, mode] = process.argv.slice(2);
const url = `${base}/broker/api/v1/filetransfer/upload/tus/${id}`;
const data = fs.readFileSync(path);
const options = {
  endpoint: url,
  headers: { Authorization: `Bearer ${token}` },
  chunkSize: Number(chunkSize),
  uploadSize: data.length,
  retryDelays: [0, 250, 500],
  onError(error) {
    console.error(`tus-js-client failed: ${error}`);
    process.exit(1);
  },
  onSuccess() {
    console.log(String(data.length));
    process.exit(0);
  },
};
if (mode === 'resume') {
  options.uploadUrl = url;
}
if (mode === 'parallel') {
  options.parallelUploads = 4;
  delete options.uploadSize; // the client sizes the parts itself
}
const upload = new tus.Upload(data, {
  ...options,
  onChunkComplete(_chunk, acknowledged, total) {
    if (mode === 'abort-half' && acknowledged >= total / 2) {
      upload.abort().then(() => {
        console.log(String(acknowledged));
        process.exit(0);
      });
    }
  },
});
upload.start();
