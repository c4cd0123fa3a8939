"""The AWS resources a command works on, named by the environment: COSTGATE_TABLE and COSTGATE_BUCKET.

The endpoints are boto's: AWS itself, or a local stack through AWS_ENDPOINT_URL (`costgate serve`)."""

import os

from costgate.dal.table import bind_table as bind_data_layer
from costgate.settings import CliBucketSettings, CliSettings


def bind_table() -> None:
    """Point the data layer at COSTGATE_TABLE."""
    bind_data_layer(CliSettings.from_env(os.environ).table_name)


def documents_bucket() -> str:
    """COSTGATE_BUCKET: where `costgate batch submit` uploads."""
    return CliBucketSettings.from_env(os.environ).bucket
