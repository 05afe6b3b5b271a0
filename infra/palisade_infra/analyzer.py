"""``PalisadeAnalyzer``: the analyzer stack of template.yaml as one CDK construct.

Kinesis and Function URL (IAM auth) ingest, optional SQS ingest, DynamoDB tables
for profiles and alerts, an S3 trail bucket, a signing-key secret, an SNS alert
topic (optionally with an e-mail subscription) and EventBridge publishing. Every
function has its own role holding only what it uses; its logs go to a log group
of its own with a retention.

Shortcoming: the Function URL answers only SigV4-signed requests; the extension's
``http`` sink signs with the analyzer key alone, so extensions ship through the
stream (``PALISADE_SINK=kinesis``), which the protection Aspect wires up.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

HANDLERS = "palisade_analyzer.aws_lambda"


def analyzer_code(folder: str | Path) -> lambda_.Code:
    """The analyzer's code laid out by ``palisade layer analyzer --into FOLDER``.

    Raises:
        FileNotFoundError: the folder does not hold the analyzer package.
    """
    path = Path(folder)
    if not (path / "palisade_analyzer" / "aws_lambda.py").is_file():
        raise FileNotFoundError(
            f"expected the analyzer's Lambda code in {str(path)!r}, found no "
            "palisade_analyzer/aws_lambda.py there; run "
            f"`palisade layer analyzer --into {path}` first"
        )
    return lambda_.Code.from_asset(str(path))


class PalisadeAnalyzer(Construct):
    """The central analyzer, deployed as Lambda functions.

    Args:
        code: the analyzer's code (see :func:`analyzer_code`).
        alert_email: an address subscribed to the alert topic, or None.
        retention_days: days the trail is kept in S3.
        log_retention: retention of the functions' log groups.
        enable_queue: also ingest from an SQS queue.
        removal_policy: of the tables and the bucket (RETAIN keeps the data).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        alert_email: str | None = None,
        retention_days: int = 90,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        enable_queue: bool = False,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        if not 1 <= retention_days <= 3650:
            raise ValueError(
                f"retention_days must be between 1 and 3650, found {retention_days!r}"
            )
        stack = cdk.Stack.of(self)

        self.profiles = self._table("Profiles", removal_policy)
        self.alerts = self._table("Alerts", removal_policy)
        self.trail = s3.Bucket(
            self,
            "Trail",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            removal_policy=removal_policy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-trail",
                    expiration=cdk.Duration.days(retention_days),
                    noncurrent_version_expiration=cdk.Duration.days(7),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
                )
            ],
        )
        self.key_id = stack.stack_name
        self.keys = secretsmanager.Secret(
            self,
            "Keys",
            description="Palisade analyzer signing key: {id, secret, functions}",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=stack.to_json_string(
                    {"id": self.key_id, "functions": ["*"]}
                ),
                generate_string_key="secret",
                password_length=48,
                exclude_punctuation=True,
            ),
        )
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_mode=kinesis.StreamMode.ON_DEMAND,
            encryption=kinesis.StreamEncryption.MANAGED,
            retention_period=cdk.Duration.hours(24),
        )
        self.stream_failures = sqs.Queue(
            self,
            "StreamFailures",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            retention_period=cdk.Duration.days(14),
            enforce_ssl=True,
        )
        self.topic = sns.Topic(
            self,
            "Alerts",
            display_name="Palisade alerts",
            master_key=kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns"),
        )
        if alert_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alert_email))

        environment = {
            "PALISADE_ANALYZER_BACKEND": "aws",
            "PALISADE_ANALYZER_TABLE_PREFIX": f"{stack.stack_name}-",
            "PALISADE_ANALYZER_BUCKET": self.trail.bucket_name,
            "PALISADE_ANALYZER_SINKS": (
                f"sns:{self.topic.topic_arn},eventbridge:default"
            ),
            "PALISADE_ANALYZER_KEYS_SECRET": self.keys.secret_arn,
            "POWERTOOLS_SERVICE_NAME": "palisade-analyzer",
            "POWERTOOLS_METRICS_NAMESPACE": "Palisade",
        }

        self.url_function = self._function(
            "IngestUrl",
            "Palisade analyzer - batches over a Function URL.",
            "function_url_handler",
            code,
            environment,
            log_retention,
        )
        self.url = self.url_function.add_function_url(
            auth_type=lambda_.FunctionUrlAuthType.AWS_IAM
        )

        self.stream_function = self._function(
            "IngestStream",
            "Palisade analyzer - batches from the Kinesis stream.",
            "kinesis_handler",
            code,
            environment,
            log_retention,
        )
        self.stream_function.add_event_source(
            sources.KinesisEventSource(
                self.stream,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=100,
                max_batching_window=cdk.Duration.seconds(1),
                report_batch_item_failures=True,
                bisect_batch_on_error=True,
                retry_attempts=5,
                max_record_age=cdk.Duration.days(1),
                on_failure=sources.SqsDlq(self.stream_failures),
            )
        )
        self.functions = [self.url_function, self.stream_function]

        self.queue: sqs.Queue | None = None
        if enable_queue:
            dead_letters = sqs.Queue(
                self,
                "QueueDeadLetters",
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                retention_period=cdk.Duration.days(14),
                enforce_ssl=True,
            )
            self.queue = sqs.Queue(
                self,
                "Queue",
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                # Six times the consumer's timeout, as Lambda recommends.
                visibility_timeout=cdk.Duration.seconds(180),
                retention_period=cdk.Duration.days(4),
                enforce_ssl=True,
                dead_letter_queue=sqs.DeadLetterQueue(
                    queue=dead_letters, max_receive_count=5
                ),
            )
            queue_function = self._function(
                "IngestQueue",
                "Palisade analyzer - batches from the SQS queue.",
                "sqs_handler",
                code,
                environment,
                log_retention,
            )
            queue_function.add_event_source(
                sources.SqsEventSource(
                    self.queue, batch_size=10, report_batch_item_failures=True
                )
            )
            self.functions.append(queue_function)

        cdk.CfnOutput(self, "IngestUrlOutput", value=self.url.url)
        cdk.CfnOutput(self, "StreamNameOutput", value=self.stream.stream_name)

    @property
    def signing_key(self) -> str:
        """``<key id>:<secret>`` for ``PALISADE_ANALYZER_KEY``.

        A CloudFormation dynamic reference, resolved at deploy time: the secret
        ends up in the protected function's configuration, readable by anyone
        who may call lambda:GetFunctionConfiguration on it.
        """
        secret = self.keys.secret_value_from_json("secret").unsafe_unwrap()
        return f"{self.key_id}:{secret}"

    def _table(self, name: str, removal_policy: cdk.RemovalPolicy) -> dynamodb.Table:
        stack = cdk.Stack.of(self)
        return dynamodb.Table(
            self,
            f"{name}Table",
            table_name=f"{stack.stack_name}-{name.lower()}",
            partition_key=dynamodb.Attribute(
                name="pk", type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=removal_policy,
        )

    def _function(
        self,
        name: str,
        description: str,
        handler: str,
        code: lambda_.Code,
        environment: dict[str, str],
        log_retention: logs.RetentionDays,
    ) -> lambda_.Function:
        """One ingest function with its own role and log group."""
        role = self._role(f"{name}Role")
        log_group = logs.LogGroup(
            self,
            f"{name}Logs",
            retention=log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        log_group.grant_write(role)
        return lambda_.Function(
            self,
            name,
            description=description,
            code=code,
            handler=f"{HANDLERS}.{handler}",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            memory_size=512,
            timeout=cdk.Duration.seconds(30),
            environment=environment,
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
        )

    def _role(self, name: str) -> iam.Role:
        """A role holding what every ingest function needs, and nothing else."""
        stack = cdk.Stack.of(self)
        role = iam.Role(
            self, name, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com")
        )
        role.add_to_policy(
            iam.PolicyStatement(
                # Reads and conditional Put/Update, also inside TransactWriteItems
                # (which IAM checks item by item).
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:BatchGetItem",
                    "dynamodb:Query",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                ],
                resources=[self.profiles.table_arn, self.alerts.table_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"],
                resources=[self.trail.arn_for_objects("trail/*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[
                    stack.format_arn(
                        service="events", resource="event-bus", resource_name="default"
                    )
                ],
            )
        )
        self.topic.grant_publish(role)
        self.keys.grant_read(role)
        return role
