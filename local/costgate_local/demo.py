"""`make run`: moto as local AWS, the table from template.yaml, a day of traffic through the real ledger."""

import logging
import time
from datetime import date

from costgate.cost import measure_savings, price_usage
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.table import bind_table
from costgate.ledger import LedgerEntry, RecordOutcome, record_request
from costgate.observability import logger
from costgate.report import CostReportRequest, GroupBy, build_report
from costgate.usage import normalise_usage
from costgate_local.aws import LocalAws, create_table, environment
from costgate_local.cli import render_report
from costgate_local.sample import sample_day

TABLE = "costgate-local"
RESENT = 10


def run_demo(day: date) -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    logger.setLevel(logging.WARNING)  # the ledger's info lines would drown the report
    quiet = {"POWERTOOLS_METRICS_DISABLED": "true"}
    started = time.monotonic()
    with LocalAws() as aws, environment({**aws.endpoints.environ(), **quiet}):
        print(f"local AWS (moto) at {aws.endpoints.endpoint_url}; creating table {TABLE!r} from template.yaml")
        create_table(aws.endpoints, TABLE)
        bind_table(TABLE, aws.endpoints.region)
        store = DynamoLedgerStore()

        requests = sample_day(day)
        print(f"recording {len(requests)} priced requests for {day} through the ledger ...", flush=True)
        entries = []
        for request in requests:
            usage = normalise_usage(request.usage)
            cost = price_usage(request.model, usage, request.at)
            savings = measure_savings(request.model, usage, cost, request.at)
            entries.append(
                LedgerEntry(
                    request_id=request.request_id,
                    at=request.at,
                    tenant=request.tenant,
                    feature=request.feature,
                    usage=usage,
                    cost=cost,
                    baseline_cost_usd=savings.baseline_usd,
                    savings=savings.by_strategy,
                )
            )
        outcomes = [record_request(store, entry) for entry in entries]
        # A client retry or a duplicate delivery carries the same request id: it must not count twice.
        resent = [record_request(store, entry) for entry in entries[:RESENT]]
        duplicates = sum(outcome is RecordOutcome.DUPLICATE for outcome in resent)
        print(
            f"recorded {outcomes.count(RecordOutcome.RECORDED)}; re-sent {RESENT} request ids: "
            f"{duplicates} recognised as duplicates and not counted again\n"
        )

        for group_by in (GroupBy.FEATURE, GroupBy.MODEL, GroupBy.TENANT):
            report = build_report(store, CostReportRequest(first=day, last=day, group_by=group_by))
            print(render_report(report), end="\n\n")
    print(
        f"done in {time.monotonic() - started:.1f} s. Baseline = the same tokens without prompt caching or the "
        "batch discount; costs are exact (the ledger stores unrounded decimals, the table rounds for display)."
    )
    return 0
