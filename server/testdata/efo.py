"""Enhanced fan-out with boto3, run by TestBoto3EnhancedFanOut against kvstream.

Usage: python3 efo.py ENDPOINT_URL [COUNT]
Credentials and region come from the environment (AWS_ACCESS_KEY_ID, ...).

It creates stream "efo", registers consumer "py" and waits until it is
ACTIVE, puts COUNT records, subscribes to shardId-000000000000 at
TRIM_HORIZON with subscribe_to_shard and reads those records and COUNT more
put while it reads, resumes with AFTER_SEQUENCE_NUMBER from the last
ContinuationSequenceNumber, checks a second subscription takes over the
first (which ends with ResourceInUseException), and deregisters the
consumer. Exit status 0 and a last line "OK <records read>" mean success.
"""
import sys
import threading
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

endpoint = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 20
stream_name = "efo"
shard_id = "shardId-000000000000"

kinesis = boto3.client(
    "kinesis",
    endpoint_url=endpoint,
    config=Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=20),
)


def wait_for(what, fn, want, timeout=30):
    deadline = time.time() + timeout
    while True:
        got = fn()
        print(what, got)
        if got == want:
            return
        if time.time() > deadline:
            sys.exit("%s stayed %s" % (what, got))
        time.sleep(0.1)


kinesis.create_stream(StreamName=stream_name, ShardCount=1)
wait_for("stream", lambda: kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamStatus"], "ACTIVE")
stream_arn = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]

consumer = kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName="py")["Consumer"]
consumer_arn = consumer["ConsumerARN"]
assert consumer_arn.startswith(stream_arn + "/consumer/py:"), consumer_arn
print("registered", consumer_arn, consumer["ConsumerStatus"])
wait_for("consumer", lambda: kinesis.describe_stream_consumer(ConsumerARN=consumer_arn)["ConsumerDescription"]["ConsumerStatus"], "ACTIVE")
consumers = kinesis.list_stream_consumers(StreamARN=stream_arn)["Consumers"]
assert [c["ConsumerName"] for c in consumers] == ["py"], consumers
assert kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["ConsumerCount"] == 1

try:
    kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName="py")
    sys.exit("a duplicate consumer was registered")
except kinesis.exceptions.ResourceInUseException as e:
    print("duplicate:", e.response["Error"]["Code"])

for i in range(count):
    kinesis.put_record(StreamName=stream_name, Data=b"%d" % i, PartitionKey="k")


def produce():
    time.sleep(0.2)
    for i in range(count, 2 * count):
        kinesis.put_record(StreamName=stream_name, Data=b"%d" % i, PartitionKey="k")
        time.sleep(0.005)


def subscribe(position):
    return kinesis.subscribe_to_shard(ConsumerARN=consumer_arn, ShardId=shard_id, StartingPosition=position)["EventStream"]


def read(stream, n):
    """Reads events until n records came; returns their data and the last continuation number."""
    got, cont = [], None
    for event in stream:
        ev = event["SubscribeToShardEvent"]
        for r in ev["Records"]:
            got.append(int(r["Data"]))
            assert r["PartitionKey"] == "k", r
            assert "ApproximateArrivalTimestamp" in r, r
        cont = ev["ContinuationSequenceNumber"]
        assert ev["MillisBehindLatest"] >= 0
        if ev["Records"]:
            assert cont == ev["Records"][-1]["SequenceNumber"], ev
        if len(got) >= n:
            return got, cont
    sys.exit("the stream ended after %d of %d records" % (len(got), n))


producer = threading.Thread(target=produce)
producer.start()
stream = subscribe({"Type": "TRIM_HORIZON"})
got, cont = read(stream, 2 * count)
producer.join()
stream.close()
assert got == list(range(2 * count)), got
print("read", len(got), "records, continuation", cont)

# Resume after the continuation number.
for i in range(2 * count, 2 * count + 5):
    kinesis.put_record(StreamName=stream_name, Data=b"%d" % i, PartitionKey="k")
stream = subscribe({"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": cont})
more, cont = read(stream, 5)
assert more == list(range(2 * count, 2 * count + 5)), more
print("resumed with", more)

# A second subscription takes over; the first ends with ResourceInUseException.
time.sleep(0.1)
second = subscribe({"Type": "LATEST"})
try:
    for event in stream:
        pass
    sys.exit("the first subscription was not taken over")
except EventStreamError as e:
    assert e.response["Error"]["Code"] == "ResourceInUseException", e.response
    print("taken over:", e.response["Error"]["Code"])
second.close()

try:
    subscribe({"Type": "LATEST", "SequenceNumber": cont})
    sys.exit("a bad starting position was accepted")
except ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidArgumentException", e.response
try:
    kinesis.subscribe_to_shard(ConsumerARN=consumer_arn, ShardId="shardId-000000000009", StartingPosition={"Type": "LATEST"})
    sys.exit("a missing shard was accepted")
except kinesis.exceptions.ResourceNotFoundException as e:
    print("missing shard:", e.response["Error"]["Code"])

kinesis.deregister_stream_consumer(ConsumerARN=consumer_arn)
try:
    status = kinesis.describe_stream_consumer(ConsumerARN=consumer_arn)["ConsumerDescription"]["ConsumerStatus"]
    assert status == "DELETING", status
except kinesis.exceptions.ResourceNotFoundException:
    pass
kinesis.delete_stream(StreamName=stream_name, EnforceConsumerDeletion=True)
print("OK", len(got) + len(more))
