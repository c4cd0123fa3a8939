"""The operator's side of costgate, never shipped to Lambda: the `costgate` command line (`cli/`), offline
tools (`tools/`: replay, calibration, the HTML report, the `make run` story), the embedded local stack
(`stack/`: moto as AWS, the API Gateway front), the Claude API simulator (`simulator/`) and the sample
workload (`workload/`)."""
