"""Uploads a file to Broker with tuspy (the Python tus client).

usage: tuspy_upload.py BASE_URL TOKEN FILE_TRANSFER_ID FILE CHUNK_SIZE (start CHUNKS | resume)

start CHUNKS: creates the upload and sends only CHUNKS chunks, as a client that dies part-way would.
resume:       a new client instance continues the upload at the server's offset and finishes it.
Every PATCH carries an Upload-Checksum (tuspy's sha1), so the checksum extension is exercised too.
Prints the final offset.
"""
import sys

from tusclient import client

base, token, transfer_id, path, chunk_size, mode = sys.argv[1:7]
url = f"{base}/broker/api/v1/filetransfer/upload/tus/{transfer_id}"
tus = client.TusClient(url, headers={"Authorization": f"Bearer {token}"})
if mode == "start":
    uploader = tus.uploader(path, chunk_size=int(chunk_size), upload_checksum=True)
    for _ in range(int(sys.argv[7])):
        uploader.upload_chunk()
elif mode == "resume":
    uploader = tus.uploader(path, url=url, chunk_size=int(chunk_size), upload_checksum=True)
    uploader.upload()
else:
    sys.exit(f"unknown mode {mode}")
print(uploader.offset)
