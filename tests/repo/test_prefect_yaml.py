"""prefect.yaml names real flows, with parameters they accept and runbooks that exist."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_every_deployment_points_at_a_flow_with_valid_parameters() -> None:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    names = [d["name"] for d in config["deployments"]]
    assert len(names) == len(set(names)) and {"sample-noop-drill", "readiness"} <= set(names)
    for deployment in config["deployments"]:
        path, _, attribute = deployment["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, attribute)
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment["parameters"]) <= accepted, deployment["name"]
        if "runbook" in deployment["parameters"]:
            assert (REPO / deployment["parameters"]["runbook"]).is_file()
        assert deployment["work_pool"]["name"] == "dr-engine"
    drill = next(d for d in config["deployments"] if d["name"] == "sample-noop-drill")
    assert drill["parameters"]["mode"] == "drill" and drill["schedules"][0]["cron"]
