"""Alert formats (native, OCSF) and sinks: JSON lines, webhook on a local
server, SNS and EventBridge under moto. Only new alerts reach the sinks."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from analyzer_records import KEYS_DOC, TEST_SETTINGS, Recorder, send
from moto import mock_aws
from palisade_analyzer.ingest import Ingestor
from palisade_analyzer.ocsf import alert_to_ocsf, event_to_ocsf
from palisade_analyzer.signing import KeyRing
from palisade_analyzer.sinks import (
    Dispatcher,
    EventBridgeSink,
    JsonLinesSink,
    SNSSink,
    WebhookSink,
    sink_from_spec,
)


def _alerts_from_attack(store, on_alert):
    """Learn, then attack twice; return the ingestor's new alerts per batch."""
    ing = Ingestor(
        store, KeyRing.from_document(KEYS_DOC), TEST_SETTINGS, on_alert=on_alert
    )
    rec = Recorder()
    send(ing, rec.batch([rec.benign(i) for i in range(20)]))
    first = send(ing, rec.batch([rec.malicious()]))
    second = send(ing, rec.batch([rec.malicious()]))
    return first.new_alerts, second.new_alerts


def test_native_and_ocsf_formats(sqlite_store):
    """OCSF Detection Finding 2004 with activity objects 1007 / 4001 / 1001."""
    alerts, _ = _alerts_from_attack(sqlite_store, None)
    shell = next(a for a in alerts if a.kind == "process")
    native = shell.to_json()
    assert native["schema"] == "palisade.alert/1"
    assert native["severity"] == "critical" and native["count"] == 1
    assert native["evidence"][0]["argv"][0] == "/bin/sh"

    finding = alert_to_ocsf(shell)
    assert (finding["class_uid"], finding["category_uid"]) == (2004, 2)
    assert (finding["activity_id"], finding["type_uid"]) == (1, 200401)
    assert finding["severity_id"] == 5
    assert finding["finding_info"]["uid"] == shell.id
    activity = finding["unmapped"]["activities"][0]
    assert (activity["class_uid"], activity["category_uid"]) == (1007, 1)
    assert (activity["activity_id"], activity["type_uid"]) == (1, 100701)
    assert activity["process"]["cmd_line"].startswith("/bin/sh -c")

    net = event_to_ocsf(
        {
            "kind": "network",
            "op": "connect",
            "ts": 1.5,
            "target": "evil.example.net:80",
            "detail": {"ip": "203.0.113.7", "resolved_from": "evil.example.net"},
            "verdict": "blocked",
        },
        "fn",
        "high",
    )
    assert (net["class_uid"], net["category_uid"], net["type_uid"]) == (4001, 4, 400101)
    assert net["dst_endpoint"] == {
        "hostname": "evil.example.net",
        "ip": "203.0.113.7",
        "port": 80,
    }
    assert (net["severity_id"], net["disposition"]) == (4, "Blocked")
    file_ = event_to_ocsf(
        {
            "kind": "file",
            "op": "write",
            "ts": 2.0,
            "target": "/var/task/app.py",
            "detail": {},
        },
        "fn",
    )
    assert (file_["class_uid"], file_["activity_id"], file_["type_uid"]) == (
        1001,
        3,
        100103,
    )
    assert (
        event_to_ocsf({"kind": "dns", "op": "resolve", "ts": 1, "target": "x"}, "f")
        is None
    )


def test_json_lines_to_stream_and_file(sqlite_store, tmp_path):
    """Each new alert is one JSON line; repeats are not sent again."""
    stream = io.StringIO()
    path = tmp_path / "alerts.jsonl"
    dispatcher = Dispatcher(
        [JsonLinesSink(stream=stream), sink_from_spec(f"file:{path}")]
    )
    first, second = _alerts_from_attack(sqlite_store, dispatcher)

    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert len(lines) == 2 and second == []
    assert {x["signature"] for x in lines} == {a.signature for a in first}
    assert path.read_text() == stream.getvalue()


@pytest.fixture
def webhook():
    """A local HTTP server recording POSTed bodies; stopped afterwards."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_webhook_receives_ocsf(sqlite_store, webhook):
    """The webhook gets one POST per batch with new alerts, in OCSF when asked."""
    url, received = webhook
    dispatcher = Dispatcher([WebhookSink(url)], alert_format="ocsf")
    _alerts_from_attack(sqlite_store, dispatcher)
    assert len(received) == 1
    assert {a["class_uid"] for a in received[0]["alerts"]} == {2004}
    assert dispatcher.failures == {}


def test_failing_sink_is_counted_and_does_not_stop_others(sqlite_store):
    """A dead webhook is logged and counted; the file sink still gets the alerts."""
    stream = io.StringIO()
    dead = WebhookSink("http://127.0.0.1:9/none", timeout=1)
    dispatcher = Dispatcher([dead, JsonLinesSink(stream=stream)])
    first, _ = _alerts_from_attack(sqlite_store, dispatcher)
    assert dispatcher.failures == {dead.name: 1}
    assert len(stream.getvalue().splitlines()) == len(first) == 2


def test_sns_and_eventbridge_under_moto(sqlite_store, aws_env):
    """SNS publishes and EventBridge events reach SQS queues subscribed to them."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        events = boto3.client("events", region_name="us-east-1")
        q1 = sqs.create_queue(QueueName="from-sns")["QueueUrl"]
        q2 = sqs.create_queue(QueueName="from-events")["QueueUrl"]
        arn = {
            q: sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            for q in (q1, q2)
        }
        topic = sns.create_topic(Name="palisade-alerts")["TopicArn"]
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=arn[q1],
            Attributes={"RawMessageDelivery": "true"},
        )
        events.create_event_bus(Name="security")
        events.put_rule(
            Name="palisade",
            EventBusName="security",
            EventPattern=json.dumps({"source": ["palisade.analyzer"]}),
        )
        events.put_targets(
            Rule="palisade",
            EventBusName="security",
            Targets=[{"Id": "q", "Arn": arn[q2]}],
        )

        dispatcher = Dispatcher(
            [SNSSink(topic, client=sns), EventBridgeSink("security", client=events)]
        )
        first, _ = _alerts_from_attack(sqlite_store, dispatcher)

        got_sns = sqs.receive_message(QueueUrl=q1, MaxNumberOfMessages=10)["Messages"]
        got_eb = sqs.receive_message(QueueUrl=q2, MaxNumberOfMessages=10)["Messages"]
        assert dispatcher.failures == {}
        assert {json.loads(m["Body"])["signature"] for m in got_sns} == {
            a.signature for a in first
        }
        bodies = [json.loads(m["Body"]) for m in got_eb]
        assert {b["source"] for b in bodies} == {"palisade.analyzer"}
        assert {b["detail"]["signature"] for b in bodies} == {
            a.signature for a in first
        }


def test_bad_sink_spec_is_explained():
    """An unknown sink names the accepted forms."""
    with pytest.raises(ValueError, match="expected stdout, file:PATH"):
        sink_from_spec("carrier-pigeon:home")
