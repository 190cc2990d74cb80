"""The classic Kinesis tutorial flow, run by TestBoto3Tutorial against kvstream.

Usage: python3 tutorial.py ENDPOINT_URL [COUNT]
Credentials and region come from the environment (AWS_ACCESS_KEY_ID, ...).

It creates "myStream" if absent, waits while it is CREATING, starts a
consumer on shardId-000000000000 from LATEST that reads with
get_records(Limit=1), puts consecutive integers with put_record from a
producer thread, and checks that the consumer saw them all, in order.
Exit status 0 and a last line "OK <count>" mean success.
"""
import json
import sys
import threading
import time

import boto3
from botocore.config import Config

endpoint = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 25
stream_name = "myStream"

kinesis = boto3.client(
    "kinesis",
    endpoint_url=endpoint,
    config=Config(retries={"max_attempts": 3, "mode": "standard"}),
)

try:
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    print("created", stream_name)
except kinesis.exceptions.ResourceInUseException:
    print(stream_name, "already exists")

# Wait while the stream is CREATING, as the tutorials do.
deadline = time.time() + 30
while True:
    status = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]["StreamStatus"]
    print("status", status)
    if status != "CREATING":
        break
    if time.time() > deadline:
        sys.exit("stream stayed CREATING")
    time.sleep(0.2)
kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1, "MaxAttempts": 10})

shard_id = "shardId-000000000000"
iterator = kinesis.get_shard_iterator(
    StreamName=stream_name, ShardId=shard_id, ShardIteratorType="LATEST"
)["ShardIterator"]


def produce():
    for i in range(count):
        out = kinesis.put_record(StreamName=stream_name, Data=json.dumps(i), PartitionKey="partitionkey")
        assert out["ShardId"] == shard_id, out
        time.sleep(0.005)


producer = threading.Thread(target=produce)
producer.start()

seen = []
deadline = time.time() + 60
while len(seen) < count:
    if time.time() > deadline:
        sys.exit("timed out; saw %r" % seen)
    out = kinesis.get_records(ShardIterator=iterator, Limit=1)
    assert len(out["Records"]) <= 1, out
    for record in out["Records"]:
        seen.append(json.loads(record["Data"]))
        assert "SequenceNumber" in record and "ApproximateArrivalTimestamp" in record
    iterator = out["NextShardIterator"]
    if not out["Records"]:
        time.sleep(0.01)
producer.join()

if seen != list(range(count)):
    sys.exit("out of order: %r" % seen)
print("OK", len(seen))
